"""Figures of share-maximising equilibria (Jagadeesan et al.), in the style of
:mod:`userchoice.plots`:

- ``social_loss_vs_<parameter>``: the social loss at equilibrium against the setting's
  parameter (α, σ or D) or the probing weight p, one line per number of providers m (mean ±
  band over seeds), with the Bayes risk of the best single model dashed;
- ``social_loss_vs_bayes_risk``: the same points against the Bayes risk, one line per m.

``plots.make_figures`` calls :func:`equilibrium_figures` for results of dynamics
``equilibrium``.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.lines import Line2D

from userchoice.analysis import Results
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
)

M = "market_n_learners"
PARAMETERS = {"equilibrium_alpha": "α (P(y = 0))", "equilibrium_sigma": "σ (feature noise)",
              "equilibrium_D": "D (representation)",
              "equilibrium_features": "k (features in the representation)",
              "p": "probing weight p"}


def _final(res: Results) -> pd.DataFrame | None:
    market = res.market
    if market is None or "social_loss" not in market:
        return None
    final = market.sort_values("step").groupby("run_id").tail(1)
    if M not in final:
        final = final.assign(**{M: int((res.manifest.get("config") or {})
                                      .get("market", {}).get("n_learners", 0))})
    return final


def _lines(res: Results, final: pd.DataFrame, x: str, opts: PlotOptions, xlabel: str,
           stem: str, shows: str) -> PlotFigure:
    ms = sorted(final[M].unique())
    handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], marker="o", label=f"m = {m}")
               for i, m in enumerate(ms)]
    handles.append(Line2D([], [], color="black", linestyle="--", label="Bayes risk"))
    fig, axes = _new_figure(opts, 1, handles=handles, single=True)
    ax = axes[0]
    stats = _stats(final, [M, x], "social_loss", opts)
    for i, m in enumerate(ms):
        s = stats[stats[M] == m].sort_values(x)
        _band(ax, s[x], s["mean"], s["half"], PALETTE[i % len(PALETTE)], opts, marker="o",
              markersize=3, linewidth=opts.look.line_width)
    if x != "bayes_risk" and "bayes_risk" in final:
        bayes = final.groupby(x)["bayes_risk"].mean().sort_index()
        ax.plot(bayes.index, bayes.to_numpy(), color="black", linestyle="--",
                linewidth=opts.look.line_width * 0.8)
    elif "bayes_risk" in final:
        lo, hi = float(final["bayes_risk"].min()), float(final["bayes_risk"].max())
        ax.plot([lo, hi], [lo, hi], color="black", linestyle="--",
                linewidth=opts.look.line_width * 0.8)
    ax.set_xlabel(xlabel, fontsize=opts.look.font_size)
    ax.set_ylabel("social loss at equilibrium", fontsize=opts.look.font_size)
    ax.set_ylim(bottom=0)
    title = _title(fig, res, f"social loss vs {xlabel}", {}, opts)
    _legend_below(fig, handles, opts)
    seeds = int(stats["n"].max()) if len(stats) else None
    return PlotFigure(stem, fig, title, _caption(res, shows, opts, seeds, None))


def equilibrium_figures(res: Results, opts: PlotOptions) -> list[PlotFigure]:
    """Every applicable equilibrium figure of ``res``."""
    final = _final(res)
    if final is None or not len(final):
        return []
    out = []
    for column, label in PARAMETERS.items():
        if column in final and final[column].nunique() > 1:
            out.append(_lines(res, final, column, opts, label, f"social_loss_vs_{column}",
                              f"Social loss E_x[Σ_j P_j(x) ℓ_j(x)] at the share-maximising "
                              f"equilibrium against {label}, one line per number of providers "
                              f"m; dashed: the Bayes risk of the best single linear model"))
    if "bayes_risk" in final and final["bayes_risk"].nunique() > 1:
        out.append(_lines(res, final, "bayes_risk", opts, "Bayes risk",
                          "social_loss_vs_bayes_risk",
                          "Social loss at equilibrium against the Bayes risk of the same "
                          "users, one line per number of providers m; dashed: social loss = "
                          "Bayes risk"))
    return out
