"""The figure of ``userchoice compare``: one market under several dynamics, side by side
(:mod:`userchoice.compare`'s lens table). Three panels: each learner's global risk, each
learner's market share (grouped bars, one colour per dynamics, ± one standard error over
seeds) and the market's social loss (one bar per dynamics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from userchoice.plots import PALETTE, PlotFigure, PlotOptions, _legend_below, _new_figure

PANELS = {"global_risk": "global risk (all users)", "share": "market share",
          "social_loss": "social loss"}
FIXED = {"dynamics", "lens", "metric", "learner", "mean", "sem", "n"}


def _held(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows at the first value of each further condition (e.g. p): one bar per learner."""
    where = {}
    for column in [c for c in table.columns if c not in FIXED]:
        values = sorted(table[column].dropna().unique())
        if values:
            where[column] = values[0]
            table = table[table[column].isna() | (table[column] == values[0])]
    return table, where


def fig_compare(table: pd.DataFrame, name: str, options: PlotOptions | None = None
                ) -> PlotFigure:
    """The lens table as three bar panels; ``name`` titles it (the market's config name)."""
    opts = options or PlotOptions()
    table, where = _held(table)
    dynamics = list(dict.fromkeys(table["dynamics"]))
    colours = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(dynamics)}
    handles = [Patch(color=colours[d], label=d) for d in dynamics]
    fig, axes = _new_figure(opts, 3, ncols=3, handles=handles, sharey=False)
    width = 0.8 / max(len(dynamics), 1)
    for ax, (lens, label) in zip(axes, PANELS.items(), strict=True):
        rows = table[table["lens"] == lens]
        learners = sorted(int(v) for v in rows["learner"].unique())
        for k, d in enumerate(dynamics):
            mine = rows[rows["dynamics"] == d].set_index("learner")
            x = np.arange(len(learners)) + (k - (len(dynamics) - 1) / 2) * width
            mean = [float(mine["mean"].get(i, np.nan)) for i in learners]
            sem = [float(mine["sem"].get(i, np.nan)) for i in learners]
            ax.bar(x, mean, width, yerr=np.nan_to_num(sem), color=colours[d], capsize=2,
                   gid=f"{lens}-{d}")
        ax.set_xticks(np.arange(len(learners)),
                      ["market" if i < 0 else f"learner {i}" for i in learners],
                      fontsize=opts.look.small_size)
        ax.set_title(label, fontsize=opts.look.font_size)
    held = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in where.items())
    title = f"{name}: one market under {', '.join(dynamics)}" + (f" ({held})" if held else "")
    if opts.show_titles:
        fig.suptitle(title, fontsize=opts.look.title_size)
    _legend_below(fig, handles, opts)
    caption = ("Final values of one market under each dynamics: each learner's loss over every "
               "user (MSGD: test loss on the test users; population: Σ_j β_j R_j(θ_i)/Σβ; "
               "equilibrium: E_x[ℓ_i(x)]), its market share, and the loss users bear under "
               "their choices (MSGD: the potential Φ; population: the average risk; "
               "equilibrium: the social loss). Bars: mean ± one standard error over seeds.")
    return PlotFigure("compare", fig, title, caption)
