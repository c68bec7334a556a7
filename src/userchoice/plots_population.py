"""Figures of population (participation) dynamics, in the style of :mod:`userchoice.plots`.

- ``risk_vs_round``: total risk against the round, mean ± band over seeds, one line per
  condition, with the rounds at which learners entered marked;
- ``risk_vs_learners``: the average risk at each equilibrium against the number of learners
  (market entry);
- ``allocation_ternary``: with three learners, each sub-population's allocation path in the
  simplex (one panel per condition, first seed); with two, each sub-population's allocation
  to learner 0 against the round;
- ``group_excess_risk``: each sub-population's relative excess risk at the end.

``plots.make_figures`` calls :func:`population_figures` for results of dynamics
``population``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from userchoice.analysis import Results
from userchoice.experiments.population import GROUP_COLUMN
from userchoice.plots import (
    PALETTE,
    PlotFigure,
    PlotOptions,
    _band,
    _caption,
    _legend_below,
    _new_figure,
    _stats,
    _title,
    display_name,
)
from userchoice.stats import seed_stats

RISK = "total_risk"


def _conditions(res: Results, frame: pd.DataFrame) -> list[str]:
    return [c for c in res.conditions if c in frame and frame[c].nunique() > 1]


def _label(where: dict[str, Any]) -> str:
    return ", ".join(f"{display_name(k)} = {_short(v)}" for k, v in where.items()) or "all runs"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "…"


def _combos(frame: pd.DataFrame, keys: Sequence[str]) -> list[dict[str, Any]]:
    if not keys:
        return [{}]
    rows = frame[list(keys)].drop_duplicates().to_dict("records")
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in keys))


def _select(frame: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    mask = np.ones(len(frame), bool)
    for key, value in where.items():
        mask &= (frame[key] == value).to_numpy()
    return frame[mask]


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def fig_risk_vs_round(res: Results, opts: PlotOptions) -> PlotFigure | None:
    market = res.market
    if market is None or RISK not in market or not market[RISK].notna().any():
        return None
    keys = _conditions(res, market)
    combos = _combos(market, keys)
    handles = [Line2D([], [], color=_colour(i), label=_label(w)) for i, w in enumerate(combos)]
    phases = res.extra.get("phases")
    entries = phases is not None and len(phases) and phases["phase"].nunique() > 1
    if entries:
        handles.append(Line2D([], [], color="gray", marker="v", linestyle="none",
                              label="a learner enters (equilibrium reached)"))
    fig, axes = _new_figure(opts, 1, handles=handles, single=True)
    ax = axes[0]
    stats = _stats(market, [*keys, "step"], RISK, opts)
    for i, where in enumerate(combos):
        s = _select(stats, where)
        _band(ax, s["step"], s["mean"], s["half"], _colour(i), opts,
              linewidth=opts.look.line_width)
        if entries:
            ends = _select(phases, where) if keys else phases
            ends = ends[ends["step"] < ends["step"].max()]  # the last phase end is the stop
            if len(ends) and RISK in ends:
                ax.plot(ends["step"], ends[RISK], linestyle="none", marker="v",
                        color=_colour(i), markersize=3, alpha=0.6)
    ax.set_xlabel("round", fontsize=opts.look.font_size)
    ax.set_ylabel("total risk Σ β α R", fontsize=opts.look.font_size)
    title = _title(fig, res, "total risk vs round", {}, opts)
    _legend_below(fig, handles, opts)
    shows = ("Total risk Σ_ij β_j α_ij R_j(θ_i) of the population dynamics against the round"
             + ("; triangles: the rounds at which an equilibrium was reached and a learner "
                "entered" if entries else ""))
    return PlotFigure("risk_vs_round", fig, title,
                      _caption(res, shows, opts, _seeds(stats), None))


def _seeds(stats: pd.DataFrame) -> int | None:
    return int(stats["n"].max()) if len(stats) else None


def fig_risk_vs_learners(res: Results, opts: PlotOptions) -> PlotFigure | None:
    phases = res.extra.get("phases")
    if phases is None or not len(phases) or phases["phase"].nunique() < 2:
        return None
    metric = "average_risk" if "average_risk" in phases else RISK
    frame = phases.copy()
    start = int((res.manifest.get("config") or {}).get("market", {}).get("n_learners", 1))
    frame["learners"] = frame["phase"] + start
    keys = _conditions(res, frame)
    combos = _combos(frame, keys)
    handles = [Line2D([], [], color=_colour(i), marker="o", label=_label(w))
               for i, w in enumerate(combos)]
    fig, axes = _new_figure(opts, 1, handles=handles if keys else (), single=True)
    ax = axes[0]
    stats = _stats(frame, [*keys, "learners"], metric, opts)
    for i, where in enumerate(combos):
        s = _select(stats, where)
        _band(ax, s["learners"], s["mean"], s["half"], _colour(i), opts, marker="o",
              markersize=3, linewidth=opts.look.line_width)
    ax.set_xlabel("learners in the market", fontsize=opts.look.font_size)
    ax.set_ylabel(metric.replace("_", " ") + " at equilibrium", fontsize=opts.look.font_size)
    title = _title(fig, res, "risk at equilibrium vs number of learners", {}, opts)
    _legend_below(fig, handles if keys else [], opts)
    shows = (f"{metric.replace('_', ' ').capitalize()} at the end of each phase (an "
             "equilibrium of the participation dynamics, or the round budget) against the "
             "number of learners in the market")
    return PlotFigure("risk_vs_learners", fig, title,
                      _caption(res, shows, opts, _seeds(stats), None))


def _simplex(alloc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric coordinates over 3 learners → the plane (vertices (0,0), (1,0), (½, √3/2))."""
    x = alloc[..., 1] + 0.5 * alloc[..., 2]
    y = (np.sqrt(3) / 2) * alloc[..., 2]
    return x, y


def fig_allocation(res: Results, opts: PlotOptions) -> PlotFigure | None:
    alloc = res.extra.get("allocations")
    if alloc is None or not len(alloc) or "allocation" not in alloc:
        return None
    n = int(alloc["learner"].max()) + 1
    if n not in (2, 3):
        return None
    keys = _conditions(res, alloc)
    combos = _combos(alloc, keys)[:6]
    groups = sorted(int(g) for g in alloc[GROUP_COLUMN].unique())
    names = (res.manifest.get("market_provenance") or {}).get("groups", {}).get("names") or []
    handles = [Line2D([], [], color=_colour(j), label=f"group {names[j] if j < len(names) else j}")
               for j in groups[:8]]
    fig, axes = _new_figure(opts, len(combos), handles=handles, sharey=True)
    for ax, where in zip(axes, combos, strict=False):
        part = _select(alloc, where) if keys else alloc
        first = sorted(part["run_id"].unique())[0]
        part = part[part["run_id"] == first]
        wide = part.pivot_table(index=["step", GROUP_COLUMN], columns="learner",
                                values="allocation").reset_index()
        for j in groups:
            g = wide[wide[GROUP_COLUMN] == j].sort_values("step")
            if n == 3:
                x, y = _simplex(g[[0, 1, 2]].to_numpy(float))
                ax.plot(x, y, color=_colour(j), linewidth=opts.look.line_width * 0.8)
                ax.plot(x[:1], y[:1], marker="o", color=_colour(j), markersize=3)
                ax.plot(x[-1:], y[-1:], marker="s", color=_colour(j), markersize=3)
            else:
                ax.plot(g["step"], g[0], color=_colour(j), linewidth=opts.look.line_width)
        if n == 3:
            ax.plot([0, 1, 0.5, 0], [0, 0, np.sqrt(3) / 2, 0], color="black", linewidth=0.6)
            for (vx, vy), label in zip([(0, 0), (1, 0), (0.5, np.sqrt(3) / 2)],
                                       ("learner 0", "learner 1", "learner 2"), strict=True):
                ax.annotate(label, (vx, vy), fontsize=opts.look.small_size, ha="center",
                            va="top" if vy == 0 else "bottom")
            ax.set_aspect("equal")
            ax.set_axis_off()
        else:
            ax.set_xlabel("round", fontsize=opts.look.font_size)
            ax.set_ylim(-0.02, 1.02)
        if keys:
            ax.set_title(_label(where), fontsize=opts.look.small_size + 1)
    if n == 2:
        axes[0].set_ylabel("allocation to learner 0", fontsize=opts.look.font_size)
    title = _title(fig, res, "allocations" + (" in the simplex" if n == 3 else ""), {}, opts)
    _legend_below(fig, handles, opts)
    shows = ("Each sub-population's allocation over the learners, first seed"
             + (": its path in the simplex from the circle (start) to the square (end); a "
                "vertex means the group is served by one learner" if n == 3
                else ": its allocation to learner 0 against the round (0 or 1: served by one "
                     "learner)"))
    return PlotFigure("allocation_ternary" if n == 3 else "allocation_vs_round", fig, title,
                      _caption(res, shows, opts, None, None))


def fig_group_excess_risk(res: Results, opts: PlotOptions) -> PlotFigure | None:
    groups = res.extra.get("groups")
    metric = "relative_excess_risk"
    if groups is None or not len(groups) or metric not in groups:
        return None
    final = groups[groups["step"] == groups.groupby("run_id")["step"].transform("max")]
    keys = _conditions(res, final)
    combos = _combos(final, keys)[:6]
    fig, axes = _new_figure(opts, 1, single=True)
    ax = axes[0]
    width = 0.8 / max(1, len(combos))
    for i, where in enumerate(combos):
        s = seed_stats(_select(final, where) if keys else final, [GROUP_COLUMN], metric)
        ax.bar(s[GROUP_COLUMN] + i * width, s["mean"], width=width, color=_colour(i),
               label=_label(where))
    ax.set_xlabel("sub-population", fontsize=opts.look.font_size)
    ax.set_ylabel("relative excess risk (%)", fontsize=opts.look.font_size)
    handles = [Line2D([], [], color=_colour(i), linewidth=4, label=_label(w))
               for i, w in enumerate(combos)] if keys else []
    title = _title(fig, res, "each group's excess risk at the end", {}, opts)
    _legend_below(fig, handles, opts)
    shows = ("Each sub-population's relative excess risk 100·(R_j / min_θ R_j − 1) at the end "
             "of the run, mean across seeds")
    return PlotFigure("group_excess_risk", fig, title, _caption(res, shows, opts, None, None))


def population_figures(res: Results, opts: PlotOptions) -> list[PlotFigure]:
    """Every applicable population-dynamics figure of ``res``."""
    out = []
    for draw in (fig_risk_vs_round, fig_risk_vs_learners, fig_allocation,
                 fig_group_excess_risk):
        drawn = draw(res, opts)
        if drawn is not None:
            out.append(drawn)
    return out
