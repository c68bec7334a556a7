"""Figures of a results directory (SPEC §8): metric vs iteration, final metric vs p / N_probe,
market shares, the two-prober comparison, an overview of every recorded metric and the
bad-vs-good outcome.

Every figure reads a :class:`~userchoice.analysis.Results` (the tidy tables of a results
directory, runs whose status is ``done`` only: diverged and failed runs never enter a mean) and
shows the mean across seeds with a band or error bar, computed by ``userchoice.analysis``:
± its standard error (``band="se"``) or its 95% confidence interval (``band="ci95"``, t with
n − 1 degrees of freedom). The primary metric is ``analysis.primary_metric``; the pooled
baseline is always drawn inside the axes and labelled.

Every learner keeps one colour (Okabe–Ito, colour-blind safe) and one marker shape in every
panel and every figure; probers are drawn with thick lines and filled markers, the others with
thin lines and hollow markers. Options: the update-all copies (``update_all``) and the paper's
reported values from the config's ``reported:`` block (``reported``) as markers; ``style``
``screen`` or ``paper`` (single-column 3.3 in wide figures, 8 pt serif fonts, 300 dpi, no
title: the caption carries it). Each figure comes with a title and a caption built from the
config's description (:class:`PlotFigure`).

A figure type that does not apply to an experiment is skipped (no p grid → no ``final_vs_p``).
When further conditions vary (κ, static values such as ``probing.n_probe``, other knobs), a
figure that does not put them on an axis is drawn once per combination, the combination in its
title and file name. Figures are matplotlib ``Figure`` objects (no pyplot global state),
written as PNG and PDF.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from userchoice.analysis import (
    BANDS,
    Results,
    at_conditions,
    band_halfwidth,
    experiment_title,
    final_rows,
    format_number,
    load_results,
    recorded_metrics,
    reference_conditions,
    reported_points,
    seed_stats,
)
from userchoice.knobs import KNOBS
from userchoice.metrics import METRICS

FORMATS = ("png", "pdf")
FIGURE_KINDS = ("metric_vs_iteration", "final_vs_p", "final_vs_nprobe",
                "market_share_vs_iteration", "two_prober_comparison", "metrics_overview",
                "zeta_potential_loglog", "path_length_vs_iteration")
NPROBE_COLUMN = "probing_n_probe"

_DISPLAY = {**{k.name: k.display for k in KNOBS}, NPROBE_COLUMN: "N_probe",
            "probing_probe_batch": "P"}
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))

# Okabe & Ito (2008), colour-blind safe, black left for the baselines. Ordered so that the
# learners probing together in the shipped configs (2 and 3) are green and purple, never a
# red/green pair, and yellow (faint on white) comes last.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442")
# One marker shape per learner as well: beyond seven learners colours repeat, shapes do not
# (and shapes survive greyscale printing).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
BASELINE_COLOR = "black"
UPDATE_ALL_COLOR = "#666666"
REPORTED_MARKER = "*"


# ---------------------------------------------------------------------------------------------
# Styles and options
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlotStyle:
    """Sizes (inches), fonts (points) and resolution of one look."""

    name: str
    panel: tuple[float, float]  # one panel of a multi-panel figure
    single: tuple[float, float]  # a one-panel figure
    max_width: float | None  # the widest a figure may be (a paper's text width)
    font_size: float
    title_size: float
    small_size: float  # ticks, legends, panel titles
    line_width: float
    dpi: int
    titles: bool  # a suptitle (papers put it in the caption)
    rc: dict[str, Any] = field(default_factory=dict)


STYLES: dict[str, PlotStyle] = {
    "screen": PlotStyle("screen", panel=(4.6, 3.4), single=(6.4, 4.2), max_width=None,
                        font_size=10, title_size=11, small_size=8, line_width=1.4, dpi=130,
                        titles=True),
    # single column of a two-column paper: 3.3 in; multi-panel figures span the 6.9 in text
    "paper": PlotStyle("paper", panel=(2.3, 1.8), single=(3.3, 2.5), max_width=6.9,
                       font_size=8, title_size=8, small_size=7, line_width=1.0, dpi=300,
                       titles=False,
                       rc={"font.family": "serif",
                           "font.serif": ["Times New Roman", "Times", "Nimbus Roman",
                                          "Liberation Serif", "DejaVu Serif"],
                           "mathtext.fontset": "stix", "pdf.fonttype": 42, "ps.fonttype": 42,
                           "axes.linewidth": 0.6, "xtick.major.width": 0.6,
                           "ytick.major.width": 0.6, "legend.handlelength": 1.8}),
}


@dataclass(frozen=True)
class PlotOptions:
    """What the figures show: ``style`` (a key of :data:`STYLES`), ``band`` (``se`` or
    ``ci95``), the update-all copies and the paper's reported values as markers, and whether
    to draw a title (``None``: the style's default)."""

    style: str = "screen"
    band: str = "se"
    update_all: bool = False
    reported: bool = True
    titles: bool | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {list(STYLES)}, got {self.style!r}")
        if self.band not in BANDS:
            raise ValueError(f"band must be one of {list(BANDS)}, got {self.band!r}")

    @property
    def look(self) -> PlotStyle:
        return STYLES[self.style]

    @property
    def show_titles(self) -> bool:
        return self.look.titles if self.titles is None else self.titles

    @property
    def band_text(self) -> str:
        return BANDS[self.band]

    @property
    def band_short(self) -> str:
        """The band as a panel title names it."""
        return {"se": "mean ± s.e.", "ci95": "mean, 95% CI"}.get(self.band, self.band)


@dataclass
class PlotFigure:
    """One figure with its file stem, title and caption. Iterates as ``(stem, figure)`` so
    ``dict(make_figures(...))`` maps stems to figures."""

    stem: str
    figure: Figure
    title: str = ""
    caption: str = ""

    def __iter__(self) -> Iterator[Any]:
        yield self.stem
        yield self.figure


def learner_color(learner: int) -> str:
    """The colour of ``learner`` in every figure."""
    return PALETTE[int(learner) % len(PALETTE)]


def learner_marker(learner: int) -> str:
    return MARKERS[int(learner) % len(MARKERS)]


# ---------------------------------------------------------------------------------------------
# Figure helpers
# ---------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    if isinstance(value, tuple):
        return ",".join(_fmt(v) for v in value)
    return str(value)


def display_name(column: str) -> str:
    """How a condition column is named in figures and tables (``kappa`` → κ …)."""
    if column in _DISPLAY:
        return _DISPLAY[column]
    return column.split("_", 1)[1] if column.startswith(("probing_", "engine_")) else column


def _slices(res: Results, frame: pd.DataFrame, exclude: Sequence[str]
            ) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """One sub-frame per combination of the varying conditions not in ``exclude``."""
    by = [c for c in res.varying(frame) if c not in exclude]
    if not by:
        yield {}, frame
        return
    for values, part in frame.groupby(by, sort=True, dropna=False):
        yield dict(zip(by, values, strict=True)), part


def _slice_title(where: dict[str, Any]) -> str:
    return ", ".join(f"{display_name(k)} = {_fmt(v)}" for k, v in where.items())


def _slice_stem(kind: str, where: dict[str, Any]) -> str:
    if not where:
        return kind
    parts = [re.sub(r"[^A-Za-z0-9_.=-]+", "", f"{_display_ascii(k)}={_fmt(v)}")
             for k, v in where.items()]
    return f"{kind}__{'_'.join(parts)}"


def _display_ascii(column: str) -> str:
    return {NPROBE_COLUMN: "n_probe", "probing_probe_batch": "probe_batch"}.get(column, column)


def _n_learners(res: Results) -> int:
    n = res.manifest.get("n_learners")
    if isinstance(n, int) and n > 0:
        return n
    return int(res.learners["learner"].max()) + 1 if len(res.learners) else 0


def plain_text(text: Any) -> str:
    """Text from the data or the results (learner names such as an Amazon category, result
    names, condition values) as matplotlib shows it literally: two ``$`` would start mathtext
    (text between them drawn as maths, and one unknown command fails the whole figure), so
    every ``$`` is escaped."""
    return str(text).replace("$", r"\$")


def _learner_label(res: Results, learner: int, probers: Sequence[int]) -> str:
    name = plain_text(res.learner_name(learner))
    return f"{name} — prober" if learner in probers else name


def _config(res: Results) -> dict[str, Any]:
    return res.manifest.get("config") or {"name": res.name}


def _reported(res: Results, opts: PlotOptions) -> dict[str, Any]:
    return (_config(res).get("reported") or {}) if opts.reported else {}


def _learner_style(learner: int, probers: Sequence[int], opts: PlotOptions,
                   dashed_others: bool = True) -> dict[str, Any]:
    """Colour and marker by learner; probers thick with filled markers, the others thin with
    hollow markers (dashed unless line styles encode something else in the figure)."""
    prober = learner in probers
    width = opts.look.line_width
    color = learner_color(learner)
    return dict(color=color, marker=learner_marker(learner), gid=f"learner-{learner}",
                linewidth=width * (1.8 if prober else 1.0),
                linestyle="-" if prober or not dashed_others else "--",
                markersize=(4.5 if prober else 3.5) * (0.8 if opts.style == "paper" else 1.0),
                markerfacecolor=color if prober else "white", markeredgecolor=color,
                markeredgewidth=0.9)


def _learner_handles(res: Results, learners: Sequence[int], probers: Sequence[int],
                     opts: PlotOptions, dashed_others: bool = True) -> list:
    return [Line2D([], [], **_learner_style(i, probers, opts, dashed_others),
                   label=_learner_label(res, i, probers)) for i in learners]


def _baseline_style(opts: PlotOptions) -> dict[str, Any]:
    return dict(color=BASELINE_COLOR, linestyle="--", linewidth=opts.look.line_width * 1.1,
                gid="pooled-baseline")


def _baseline_handle(res: Results, opts: PlotOptions, value: float | None = None) -> list:
    value = res.baseline if value is None else value
    if value is None:
        return []
    return [Line2D([], [], **_baseline_style(opts),
                   label=f"pooled baseline ({format_number(value, 3)})")]


def _keep_inside(ax, values: Sequence[float | None], headroom: float = 0.10) -> None:
    """Widen the y-limits so that each value lies inside the axes with room for its label
    (``headroom`` of the span above, half that below), never on the frame."""
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not values:
        return
    low, high = ax.get_ylim()
    span = max(high - low, 1e-12)
    low = min(low, min(values) - 0.05 * span)
    high = max(high, max(values) + headroom * span)
    ax.set_ylim(low, high)


def _draw_baseline(ax, value: float | None, opts: PlotOptions, label: bool = True,
                   text: str = "pooled baseline") -> None:
    """The pooled baseline as a dashed black line, kept inside the y-limits; ``label``: its
    name and value written just above the line at the right."""
    if value is None:
        return
    ax.axhline(value, zorder=1.5, **_baseline_style(opts))
    _keep_inside(ax, [value])
    if label:
        ax.annotate(f"{text} {format_number(value, 3)}", xy=(0.01, value),
                    xycoords=("axes fraction", "data"), xytext=(2, 2),
                    textcoords="offset points", ha="left", va="bottom",
                    fontsize=opts.look.small_size, color=BASELINE_COLOR, zorder=6,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                          "edgecolor": "none", "alpha": 0.75})


def _update_all_style(opts: PlotOptions) -> dict[str, Any]:
    return dict(color=UPDATE_ALL_COLOR, linestyle=":", linewidth=opts.look.line_width * 1.4,
                gid="update-all")


def _update_all_handle(opts: PlotOptions) -> list:
    return [Line2D([], [], **_update_all_style(opts),
                   label="update-all copies")]


def _reported_style(opts: PlotOptions, color: str = "black") -> dict[str, Any]:
    return dict(marker=REPORTED_MARKER, markersize=11 if opts.style == "screen" else 8,
                markerfacecolor=color, markeredgecolor="black", markeredgewidth=0.7,
                linestyle="none", zorder=5, gid="paper")


def _reported_handle(opts: PlotOptions, color: str = "black", what: str = "prober") -> list:
    return [Line2D([], [], **_reported_style(opts, color), label=f"paper: {what}")]


def _paper_pooled_style(opts: PlotOptions) -> dict[str, Any]:
    return dict(color=BASELINE_COLOR, linestyle="-.", linewidth=opts.look.line_width * 0.8,
                alpha=0.7, gid="paper-pooled")


def _paper_pooled(reported: dict[str, Any], opts: PlotOptions) -> tuple[float | None, list]:
    """The paper's pooled baseline (None when not reported) and its legend handle."""
    try:
        value = float(reported.get("pooled"))
    except (TypeError, ValueError):
        return None, []
    return value, [Line2D([], [], **_paper_pooled_style(opts),
                          label=f"paper: pooled ({format_number(value, 3)})")]


def _draw_paper_pooled(ax, value: float | None, opts: PlotOptions) -> None:
    """The paper's pooled baseline as a thin dash-dot line inside the limits."""
    if value is not None:
        ax.axhline(value, zorder=1.4, **_paper_pooled_style(opts))
        _keep_inside(ax, [value])


def _legend_columns(handles: list, width: float, opts: PlotOptions) -> int:
    """As many legend columns as fit in ``width`` inches (the widest label measured in the
    style's font, plus the handle and the spacing), at most 4."""
    if not handles:
        return 1
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(10, 10, 72)
    font = FontProperties(size=opts.look.small_size)
    widest = max(renderer.get_text_width_height_descent(str(h.get_label()), font, False)[0]
                 for h in handles) / 72.0
    column = widest + opts.look.small_size * 4.8 / 72.0  # handle, padding, column gap
    return max(1, min(4, len(handles), int((width - 0.15) // column)))


def _new_figure(opts: PlotOptions, n_panels: int, ncols: int | None = None,
                handles: Sequence = (), sharey: bool = True, single: bool = False
                ) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_panels`` axes sized by the style, with room below for a legend of
    ``handles`` (see :func:`_legend_below`)."""
    look = opts.look
    ncols = ncols or min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    title = 0.9 if opts.show_titles else 0.35
    if single:
        width, height = look.single
        height += title - 0.35
    else:
        pw, ph = look.panel
        if look.max_width is not None and pw * ncols > look.max_width:
            scale = look.max_width / (pw * ncols)
            pw, ph = pw * scale, ph * scale
        width, height = pw * ncols + 0.4, ph * nrows + title
    handles = list(handles)
    if handles:
        rows = math.ceil(len(handles) / _legend_columns(handles, width, opts))
        height += 0.1 + rows * look.small_size * 1.9 / 72.0
    fig = Figure(figsize=(width, height), layout="constrained", dpi=look.dpi)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[:n_panels]:
        ax.tick_params(labelsize=look.small_size)
        ax.grid(alpha=0.3, linewidth=0.5)
    return fig, axes[:n_panels]


def _legend_below(fig: Figure, handles: list, opts: PlotOptions) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside lower center",
                   ncols=_legend_columns(handles, fig.get_figwidth(), opts),
                   fontsize=opts.look.small_size, frameon=False)


def _title(fig: Figure, res: Results, text: str, where: dict[str, Any], opts: PlotOptions
           ) -> str:
    """The figure's title, drawn when the options show titles: the experiment's readable name
    on the first line, what the figure shows (and the conditions it holds) on the second."""
    extra = f" — {_slice_title(where)}" if where else ""
    title = f"{experiment_title(_config(res))}\n{text}{extra}"
    if opts.show_titles:
        fig.suptitle(plain_text(title), fontsize=opts.look.title_size)
    return title.replace("\n", ": ")


def _caption(res: Results, shows: str, opts: PlotOptions, n_seeds: int | None,
             baseline: float | None, extras: Sequence[str] = ()) -> str:
    """A figure caption: what it shows, the band and the seeds, the reference lines, then
    the experiment's description from its config."""
    parts = [shows.rstrip(".") + "."]
    if n_seeds:
        parts.append(f"Lines and markers: {opts.band_text} across {n_seeds} seed"
                     f"{'s' if n_seeds != 1 else ''}.")
    if baseline is not None:
        parts.append(f"Dashed black line: the pooled baseline ({format_number(baseline, 3)}), "
                     f"one model fitted on every training user.")
    parts += [e.rstrip(".") + "." for e in extras]
    description = str(_config(res).get("description") or "").strip()
    if description:
        parts.append(description)
    return " ".join(parts)


def _stats(frame: pd.DataFrame, keys: list[str], metric: str, opts: PlotOptions
           ) -> pd.DataFrame:
    """Seed statistics with a ``half`` column: the half-width of the chosen band."""
    stats = seed_stats(frame, keys, metric)
    stats["half"] = band_halfwidth(stats["sem"].to_numpy(float), stats["n"].to_numpy(float),
                                   opts.band) if len(stats) else []
    return stats


def _band(ax, x, mean, half, color, opts: PlotOptions, **line) -> None:
    """A line with a shaded band of ± ``half`` (edges drawn too, so thin bands stay visible).
    The band's gid is the line's with ``-band`` appended."""
    x, mean = np.asarray(x, float), np.asarray(mean, float)
    ax.plot(x, mean, color=color, **line)
    half = np.nan_to_num(np.asarray(half, float), nan=0.0)
    if np.any(half > 0):
        gid = line.get("gid")
        ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.22, linewidth=0,
                        gid=f"{gid}-band" if gid else None)
        for edge in (mean - half, mean + half):
            ax.plot(x, edge, color=color, linewidth=0.5, alpha=0.55)


def _errorbar(ax, x, mean, half, opts: PlotOptions, **style) -> None:
    """Means with error bars of ± ``half``; the line keeps the style's gid, the bars get
    ``-errorbar`` appended."""
    gid = style.pop("gid", None)
    bars = ax.errorbar(x, mean, yerr=np.nan_to_num(np.asarray(half, float), nan=0.0),
                       capsize=2.5 if opts.style == "paper" else 3, elinewidth=0.9, **style)
    bars.lines[0].set_gid(gid)
    for collection in bars.lines[2]:
        collection.set_gid(f"{gid}-errorbar" if gid else None)


def _n_seeds(stats: pd.DataFrame) -> int:
    return int(stats["n"].max()) if len(stats) else 0


def _update_all_final(res: Results, frame: pd.DataFrame) -> float | None:
    """The update-all copies' final value of the primary metric, pooled over learners and
    seeds (they do not depend on p)."""
    column = f"update_all_{res.metric}"
    final = final_rows(frame)
    if column not in final or not final[column].notna().any():
        return None
    return float(final[column].mean())


# ---------------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------------


def fig_metric_vs_iteration(res: Results, frame: pd.DataFrame, where: dict[str, Any],
                            opts: PlotOptions | None = None) -> PlotFigure:
    """Per-learner metric vs step, one panel per p, mean and band over seeds."""
    opts = opts or PlotOptions()
    ps = sorted(frame["p"].unique())
    learners = sorted(int(v) for v in frame["learner"].unique())
    probers = res.probers(frame)
    reported = _reported(res, opts)
    paper = reported_points(reported, "prober")
    column = f"update_all_{res.metric}"
    show_update_all = opts.update_all and column in frame and frame[column].notna().any()
    handles = [*_learner_handles(res, learners, probers, opts), *_baseline_handle(res, opts)]
    if show_update_all:
        handles += _update_all_handle(opts)
    if paper and probers:
        handles += _reported_handle(opts, learner_color(probers[0]), "prober at that p")
    fig, axes = _new_figure(opts, len(ps), handles=handles)
    stats = _stats(frame, ["p", "learner", "step"], res.metric, opts)
    update = (_stats(frame, ["p", "step"], column, opts) if show_update_all else None)
    for k, (ax, p) in enumerate(zip(axes, ps, strict=True)):
        for i in learners:
            s = stats[(stats["p"] == p) & (stats["learner"] == i)]
            style = _learner_style(i, probers, opts)
            color = style.pop("color")
            _band(ax, s["step"], s["mean"], s["half"], color, opts, markevery=max(1, len(s) // 8),
                  **style)
        if update is not None:
            u = update[update["p"] == p]
            ax.plot(u["step"], u["mean"], **_update_all_style(opts))
        value = paper.get(float(p))
        if value is not None and probers and len(stats):
            ax.plot([stats["step"].max()], [value], **_reported_style(
                opts, learner_color(probers[0])))
            _keep_inside(ax, [value])
        _draw_baseline(ax, res.baseline, opts, label=k == 0)
        ax.set_title(f"p = {_fmt(p)}", fontsize=opts.look.small_size + 1)
        ax.set_xlabel("step", fontsize=opts.look.font_size)
    axes[0].set_ylabel(res.metric_label, fontsize=opts.look.font_size)
    n_seeds = _n_seeds(stats)
    title = _title(fig, res, f"{res.metric_label} vs iteration", where, opts)
    _legend_below(fig, handles, opts)
    extras = []
    if show_update_all:
        extras.append("Dotted grey: the update-all copies (trained on every arriving user), "
                      "mean over learners")
    if paper:
        extras.append("Stars: the prober's final value reported in the paper at that p")
    shows = (f"{res.metric_label.capitalize()} of each learner against the step, one panel "
             f"per probing weight p" + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("", fig, title, _caption(res, shows, opts, n_seeds, res.baseline, extras))


def fig_final_vs_p(res: Results, frame: pd.DataFrame, where: dict[str, Any],
                   opts: PlotOptions | None = None) -> PlotFigure:
    """Final metric vs p per learner (colour), one line style per κ."""
    opts = opts or PlotOptions()
    final = final_rows(frame)
    stats = _stats(final, ["kappa", "learner", "p"], res.metric, opts)
    kappas = sorted(stats["kappa"].unique())
    learners = sorted(int(v) for v in stats["learner"].unique())
    probers = res.probers(frame)
    by_kappa = len(kappas) > 1
    handles = _learner_handles(res, learners, probers, opts, dashed_others=not by_kappa)
    if by_kappa:
        handles += [Line2D([], [], color="gray", linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                           linewidth=opts.look.line_width, label=f"κ = {_fmt(kappa)}")
                    for k, kappa in enumerate(kappas)]
    handles += _baseline_handle(res, opts)
    reported = _reported(res, opts)
    paper = reported_points(reported, "prober")
    update_all = _update_all_final(res, frame) if opts.update_all else None
    if update_all is not None:
        handles += _update_all_handle(opts)
    if paper and probers:
        handles += _reported_handle(opts, learner_color(probers[0]), "prober")
    paper_pooled, pooled_handle = _paper_pooled(reported, opts)
    handles += pooled_handle
    fig, (ax,) = _new_figure(opts, 1, handles=handles, single=True)
    for k, kappa in enumerate(kappas):
        for i in learners:
            s = stats[(stats["kappa"] == kappa) & (stats["learner"] == i)]
            style = _learner_style(i, probers, opts, dashed_others=not by_kappa)
            if by_kappa:
                style["linestyle"] = _LINESTYLES[k % len(_LINESTYLES)]
            _errorbar(ax, s["p"], s["mean"], s["half"], opts, **style)
    if update_all is not None:
        ax.axhline(update_all, **_update_all_style(opts))
    if paper and probers:
        ax.plot(list(paper), list(paper.values()),
                **_reported_style(opts, learner_color(probers[0])))
        _keep_inside(ax, list(paper.values()))
    _draw_paper_pooled(ax, paper_pooled, opts)
    _draw_baseline(ax, res.baseline, opts)
    ax.set_xlabel("probing weight p", fontsize=opts.look.font_size)
    ax.set_ylabel(f"final {res.metric_label}", fontsize=opts.look.font_size)
    title = _title(fig, res, f"final {res.metric_label} vs probing weight p", where, opts)
    _legend_below(fig, handles, opts)
    extras = []
    if by_kappa:
        extras.append("Line styles: the κ noise levels")
    if update_all is not None:
        extras.append(f"Dotted grey: the update-all copies ({format_number(update_all, 3)})")
    if paper:
        extras.append("Stars: the prober's values reported in the paper; dash-dot: the "
                      "paper's pooled baseline" if paper_pooled is not None
                      else "Stars: the prober's values reported in the paper")
    shows = (f"Final {res.metric_label} of each learner (last evaluation step) against the "
             f"probing weight p" + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("", fig, title,
                      _caption(res, shows, opts, _n_seeds(stats), res.baseline, extras))


def fig_final_vs_nprobe(res: Results, frame: pd.DataFrame, where: dict[str, Any],
                        opts: PlotOptions | None = None) -> PlotFigure:
    """Probers' final metric vs N_probe (mean and band) and its spread across seeds."""
    opts = opts or PlotOptions()
    final = final_rows(frame)
    final = final[final["is_prober"].astype(bool)]
    if (final["p"] > 0).any():  # at p = 0 the probe set is unused
        final = final[final["p"] > 0]
    stats = _stats(final, ["p", "learner", NPROBE_COLUMN], res.metric, opts)
    ps = sorted(stats["p"].unique())
    learners = sorted(int(v) for v in stats["learner"].unique())
    reported = _reported(res, opts)
    paper = reported_points(reported, "by_n_probe")
    def style_of(k: int, learner: int) -> dict[str, Any]:
        return {**_learner_style(learner, learners, opts),
                "linestyle": _LINESTYLES[k % len(_LINESTYLES)]}

    handles = [Line2D([], [], **style_of(k, i),
                      label=f"{plain_text(res.learner_name(i))}, p = {_fmt(p)}")
               for k, p in enumerate(ps) for i in learners]
    handles += _baseline_handle(res, opts)
    color = learner_color(learners[0]) if len(learners) == 1 else "black"
    if paper:
        handles += _reported_handle(opts, color, "prober")
    fig, axes = _new_figure(opts, 2, ncols=2, handles=handles, sharey=False)
    for k, p in enumerate(ps):
        for i in learners:
            s = stats[(stats["p"] == p) & (stats["learner"] == i)]
            _errorbar(axes[0], s[NPROBE_COLUMN], s["mean"], s["half"], opts, **style_of(k, i))
            axes[1].plot(s[NPROBE_COLUMN], s["std"], **style_of(k, i))
    if paper:
        axes[0].plot(list(paper), list(paper.values()), **_reported_style(opts, color))
        _keep_inside(axes[0], list(paper.values()))
    _draw_baseline(axes[0], res.baseline, opts)
    values = np.unique(stats[NPROBE_COLUMN].to_numpy(float))
    values = np.unique([*values, *paper]) if paper else values
    for ax in axes:
        if len(values) and values.min() > 0 and values.max() / values.min() >= 10:
            ax.set_xscale("log")
            ax.set_xticks(values, [_fmt(v) for v in values])
            ax.minorticks_off()
        ax.set_xlabel("N_probe (probe-set size)", fontsize=opts.look.font_size)
    axes[0].set_ylabel(f"final {res.metric_label}", fontsize=opts.look.font_size)
    axes[0].set_title(opts.band_short, fontsize=opts.look.small_size + 1)
    axes[1].set_ylabel("standard deviation across seeds", fontsize=opts.look.font_size)
    axes[1].set_title("spread across seeds", fontsize=opts.look.small_size + 1)
    axes[1].set_ylim(bottom=0)
    title = _title(fig, res, f"probers' final {res.metric_label} vs N_probe", where, opts)
    _legend_below(fig, handles, opts)
    extras = ["Right: the standard deviation of the final value across seeds"]
    if paper:
        extras.append("Stars: the values reported in the paper")
    shows = (f"Final {res.metric_label} of the probers against the probe-set size N_probe"
             + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("", fig, title,
                      _caption(res, shows, opts, _n_seeds(stats), res.baseline, extras))


def fig_market_share(res: Results, frame: pd.DataFrame, where: dict[str, Any],
                     opts: PlotOptions | None = None) -> PlotFigure:
    """market_share (expected share of the test users, solid, with its band) and batch_share
    (share of the arriving batches since the previous evaluation, dashed) per learner vs step,
    for the smallest and the largest p."""
    opts = opts or PlotOptions()
    ps = sorted(frame["p"].unique())
    ps = [ps[0], ps[-1]] if len(ps) > 1 else ps
    learners = sorted(int(v) for v in frame["learner"].unique())
    probers = res.probers(frame)
    has_batch = "batch_share" in frame and frame["batch_share"].notna().any()
    handles = _learner_handles(res, learners, probers, opts, dashed_others=False)
    handles.append(Line2D([], [], color="gray", label="market share (expected, test users)"))
    if has_batch:
        handles.append(Line2D([], [], color="gray", linestyle="--",
                              label="batch share (mean since last eval)"))
    fig, axes = _new_figure(opts, len(ps), ncols=len(ps), handles=handles)
    share = _stats(frame, ["p", "learner", "step"], "market_share", opts)
    batch = seed_stats(frame, ["p", "learner", "step"], "batch_share") if has_batch else None
    for ax, p in zip(axes, ps, strict=True):
        for i in learners:
            s = share[(share["p"] == p) & (share["learner"] == i)]
            style = _learner_style(i, probers, opts, dashed_others=False)
            color = style.pop("color")
            _band(ax, s["step"], s["mean"], s["half"], color, opts,
                  markevery=max(1, len(s) // 8), **style)
            if batch is not None:
                b = batch[(batch["p"] == p) & (batch["learner"] == i)]
                ax.plot(b["step"], b["mean"], color=color, linestyle="--",
                        linewidth=opts.look.line_width * 0.7, alpha=0.8)
        ax.set_title(f"p = {_fmt(p)}", fontsize=opts.look.small_size + 1)
        ax.set_xlabel("step", fontsize=opts.look.font_size)
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("share of users choosing the learner", fontsize=opts.look.font_size)
    title = _title(fig, res, "market share vs iteration", where, opts)
    _legend_below(fig, handles, opts)
    shows = ("Market share of each learner against the step (solid: expected share of the "
             "test users under the choice rule" + ("; dashed: realised share of the arriving "
                                                    "batches" if has_batch else "")
             + "), at the smallest and the largest p"
             + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("", fig, title, _caption(res, shows, opts, _n_seeds(share), None))


def fig_two_prober(res: Results, frame: pd.DataFrame, where: dict[str, Any],
                   opts: PlotOptions | None = None) -> PlotFigure:
    """Final metric vs p, probers (thick, filled) vs non-probers (thin, hollow, dashed), and
    each learner's change from its value at the smallest p."""
    opts = opts or PlotOptions()
    final = final_rows(frame)
    stats = _stats(final, ["learner", "p"], res.metric, opts)
    learners = sorted(int(v) for v in stats["learner"].unique())
    probers = res.probers(frame)
    p0 = stats["p"].min()
    update_all = _update_all_final(res, frame) if opts.update_all else None
    handles = [*_learner_handles(res, learners, probers, opts), *_baseline_handle(res, opts)]
    if update_all is not None:
        handles += _update_all_handle(opts)
    fig, axes = _new_figure(opts, 2, ncols=2, handles=handles, sharey=False)
    for i in learners:
        s = stats[stats["learner"] == i].sort_values("p")
        style = _learner_style(i, probers, opts)
        _errorbar(axes[0], s["p"], s["mean"], s["half"], opts, **style)
        start = s.loc[s["p"] == p0, "mean"]
        if len(start):
            axes[1].plot(s["p"], s["mean"] - float(start.iloc[0]), **style)
    if update_all is not None:
        axes[0].axhline(update_all, **_update_all_style(opts))
    _draw_baseline(axes[0], res.baseline, opts)
    axes[1].axhline(0.0, color="gray", linewidth=0.8)
    for ax in axes:
        ax.set_xlabel("probing weight p", fontsize=opts.look.font_size)
    axes[0].set_ylabel(f"final {res.metric_label}", fontsize=opts.look.font_size)
    axes[0].set_title(f"final value ({opts.band_short})", fontsize=opts.look.small_size + 1)
    axes[1].set_ylabel(f"change from p = {_fmt(p0)}", fontsize=opts.look.font_size)
    axes[1].set_title("gain relative to the smallest p", fontsize=opts.look.small_size + 1)
    title = _title(fig, res, f"{len(probers)} probers vs non-probers", where, opts)
    _legend_below(fig, handles, opts)
    shows = (f"Final {res.metric_label} against p for the {len(probers)} probing learners "
             f"(thick lines, filled markers) and the others (thin, dashed, hollow); right: "
             f"each learner's change from p = {_fmt(p0)}"
             + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("", fig, title,
                      _caption(res, shows, opts, _n_seeds(stats), res.baseline))


def fig_metrics_overview(res: Results, learners: pd.DataFrame, market: pd.DataFrame | None,
                         where: dict[str, Any], opts: PlotOptions | None = None) -> PlotFigure:
    """One small panel per recorded metric of the metric table (learner and prober kinds: one
    line per learner; market kind: one line), mean and band over seeds vs step, titled with
    the metric's display label; the pooled baseline where the manifest records that metric."""
    opts = opts or PlotOptions()
    names = recorded_metrics(learners, ("learner", "prober"))
    market_names = recorded_metrics(market, ("market",)) if market is not None else []
    learner_ids = sorted(int(v) for v in learners["learner"].unique())
    probers = res.probers(learners)
    handles = _learner_handles(res, learner_ids, probers, opts)
    if market_names:
        handles.append(Line2D([], [], color="black", linewidth=1.4, label="market-wide"))
    if any(res.baseline_of(n) is not None for n in [*names, *market_names]):
        handles.append(Line2D([], [], **_baseline_style(opts), label="pooled baseline"))
    n_panels = len(names) + len(market_names)
    fig, axes = _new_figure(opts, n_panels, ncols=min(n_panels, 4),
                            handles=handles, sharey=False)
    n_seeds = 0
    small = opts.look.small_size
    for ax, name in zip(axes, [*names, *market_names], strict=True):
        if name in names:
            stats = _stats(learners, ["learner", "step"], name, opts)
            for i in learner_ids:
                s = stats[stats["learner"] == i]
                style = _learner_style(i, probers, opts)
                color = style.pop("color")
                style.pop("marker")
                _band(ax, s["step"], s["mean"], s["half"], color, opts, **style)
        else:
            stats = _stats(market, ["step"], name, opts)
            _band(ax, stats["step"], stats["mean"], stats["half"], "black", opts,
                  linewidth=opts.look.line_width)
        n_seeds = max(n_seeds, _n_seeds(stats))
        _draw_baseline(ax, res.baseline_of(name), opts, label=False)
        metric = METRICS.get(name)
        ax.set_title(metric.display + (" (market)" if metric.kind == "market" else ""),
                     fontsize=small if opts.style == "paper" else small + 1)
        ax.set_xlabel("step", fontsize=small)
    title = _title(fig, res, "every recorded metric vs iteration", where, opts)
    _legend_below(fig, handles, opts)
    shows = ("Every metric the runs recorded against the step, one panel per metric (per "
             "learner, or market-wide)" + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("metrics_overview", fig, title,
                      _caption(res, shows, opts, n_seeds, None,
                               ["Dashed black: the pooled baseline where it records the "
                                "metric"]))


# Su & Dean's streaming protocol (NEIGHBOURS.md §A): one line per ζ, coloured along viridis
# (ordered values), drawn for experiments that record the ζ-potential (the zeta_random rule).


def _zeta_color(index: int, count: int) -> str:
    from matplotlib.colors import to_hex

    return to_hex(matplotlib.colormaps["viridis"](0.85 * index / max(count - 1, 1)))


def _zeta_values(frame: pd.DataFrame) -> list[Any]:
    return sorted(frame["zeta"].dropna().unique()) if "zeta" in frame else [None]


def _at_zeta(frame: pd.DataFrame, zeta: Any) -> pd.DataFrame:
    return frame if zeta is None else frame[frame["zeta"] == zeta]


def _zeta_handles(zetas: Sequence[Any], opts: PlotOptions) -> list:
    return [Line2D([], [], color=_zeta_color(k, len(zetas)), linewidth=opts.look.line_width * 1.3,
                   label="one line" if z is None else f"ζ = {_fmt(z)}")
            for k, z in enumerate(zetas)]


def _per_run(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (run, step): a learner metric's mean over the run's learners."""
    keys = ["run_id", "step", *(["zeta"] if "zeta" in frame else [])]
    return frame.groupby(keys, sort=True)[metric].mean().reset_index()


def fig_zeta_potential(res: Results, frame: pd.DataFrame, where: dict[str, Any],
                       opts: PlotOptions | None = None) -> PlotFigure:
    """The learners' ζ-potential vs step on log–log axes, one line per ζ (mean and band over
    seeds), the update-all copies' ζ-potential dashed in the same colour; the paper's start
    and end values (``reported.potential_start`` / ``potential_end``: ζ → value,
    ``update_all_end``) as stars."""
    opts = opts or PlotOptions()
    market = res.market[res.market["run_id"].isin(frame["run_id"].unique())]
    market = market[market["step"] > 0]  # log axes
    zetas = _zeta_values(market)
    keys = [*(["zeta"] if zetas != [None] else []), "step"]
    stats = _stats(market, keys, "zeta_potential", opts)
    column = "update_all_zeta_potential"
    update = _stats(market, keys, column, opts) if column in market and \
        market[column].notna().any() else None
    reported = _reported(res, opts)
    starts, ends = (reported_points(reported, key) for key in ("potential_start",
                                                               "potential_end"))
    try:
        update_end = float(reported.get("update_all_end"))
    except (TypeError, ValueError):
        update_end = None
    handles = _zeta_handles(zetas, opts)
    if update is not None:
        handles.append(Line2D([], [], color="gray", linestyle="--",
                              linewidth=opts.look.line_width, label="update-all copies"))
    if starts or ends or update_end is not None:
        handles += _reported_handle(opts, "white", "start and end values")
    fig, axes = _new_figure(opts, 1, handles=handles, single=True)
    ax = axes[0]
    first, last = (float(stats["step"].min()), float(stats["step"].max())) if len(stats) \
        else (1.0, 1.0)
    for k, z in enumerate(zetas):
        color = _zeta_color(k, len(zetas))
        s = _at_zeta(stats, z)
        _band(ax, s["step"], s["mean"], s["half"], color, opts,
              linewidth=opts.look.line_width * 1.3, gid=f"zeta-{_fmt(z)}")
        if update is not None:
            u = _at_zeta(update, z)
            ax.plot(u["step"], u["mean"], color=color, linestyle="--",
                    linewidth=opts.look.line_width, gid=f"update-all-zeta-{_fmt(z)}")
        for x, values in ((first, starts), (last, ends)):
            value = values.get(float(z)) if z is not None else None
            if value is not None:
                ax.plot([x], [value], **_reported_style(opts, color))
    if update_end is not None:
        ax.plot([last], [update_end], **_reported_style(opts, "white"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.3, not 3 × 10⁻¹
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("step t (log)", fontsize=opts.look.font_size)
    ax.set_ylabel("ζ-potential (log)", fontsize=opts.look.font_size)
    title = _title(fig, res, "ζ-potential vs step (log–log)", where, opts)
    _legend_below(fig, handles, opts)
    extras = []
    if update is not None:
        extras.append("Dashed: the update-all copies' ζ-potential (same colour per ζ)")
    if starts or ends or update_end is not None:
        extras.append("Stars: the paper's start and end values (white: update-all)")
    shows = ("Su & Dean's ζ-potential (1−ζ)·E[min_i ℓ_i] + ζ·E[mean_i ℓ_i] on the test users "
             "against the step on log–log axes, one line per ζ"
             + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("", fig, title, _caption(res, shows, opts, _n_seeds(stats), None, extras))


def fig_path_length(res: Results, frame: pd.DataFrame, where: dict[str, Any],
                    opts: PlotOptions | None = None) -> PlotFigure:
    """Path length Σ_s ‖θ_{s+1} − θ_s‖ (mean over the learners of each run, then mean and
    band over seeds) vs step on a log-x axis, one line per ζ: a straight line is growth like
    log t, a bend downwards flattening faster."""
    opts = opts or PlotOptions()
    runs = _per_run(frame[frame["step"] > 0], "path_length")
    zetas = _zeta_values(runs)
    stats = _stats(runs, [*(["zeta"] if zetas != [None] else []), "step"], "path_length", opts)
    handles = _zeta_handles(zetas, opts)
    fig, axes = _new_figure(opts, 1, handles=handles, single=True)
    ax = axes[0]
    for k, z in enumerate(zetas):
        s = _at_zeta(stats, z)
        _band(ax, s["step"], s["mean"], s["half"], _zeta_color(k, len(zetas)), opts,
              linewidth=opts.look.line_width * 1.3, gid=f"zeta-{_fmt(z)}")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("step t (log)", fontsize=opts.look.font_size)
    ax.set_ylabel("path length Σ‖Δθ‖ (mean over learners)", fontsize=opts.look.font_size)
    title = _title(fig, res, "path length vs step (log t)", where, opts)
    _legend_below(fig, handles, opts)
    shows = ("Path length of the learners' parameters Σ_s ‖θ_{s+1} − θ_s‖, mean over the "
             "learners of each run, against the step on a log axis, one line per ζ"
             + (f" ({_slice_title(where)})" if where else ""))
    return PlotFigure("", fig, title, _caption(res, shows, opts, _n_seeds(stats), None))


def _overview(res: Results, opts: PlotOptions) -> PlotFigure | None:
    """The metrics overview at the smallest p, other conditions at their reference values."""
    where = reference_conditions(res.learners, res.static_columns)
    learners = at_conditions(res.learners, where)
    if not len(learners):
        return None
    where["p"] = float(learners["p"].min())
    learners = learners[learners["p"] == where["p"]]
    market = None
    if res.market is not None and len(res.market):
        market = at_conditions(res.market, where)
    shown = {k: v for k, v in where.items() if k in res.varying() or k == "p"}
    return fig_metrics_overview(res, learners, market, shown, opts)


@contextmanager
def _rc(opts: PlotOptions) -> Iterator[None]:
    """The style's matplotlib settings while figures are built (fonts are fixed then)."""
    look = opts.look
    rc = {"font.size": look.font_size, "axes.labelsize": look.font_size,
          "axes.titlesize": look.small_size + 1, "legend.fontsize": look.small_size,
          "xtick.labelsize": look.small_size, "ytick.labelsize": look.small_size,
          "savefig.dpi": look.dpi, **look.rc}
    with matplotlib.rc_context(rc):
        yield


def _options(options: PlotOptions | None, kwargs: dict[str, Any]) -> PlotOptions:
    if options is not None and kwargs:
        raise TypeError("pass either options= or the keyword options, not both")
    return options or PlotOptions(**kwargs)


def make_figures(results_dir: Results | str | Path, overview: bool = True,
                 options: PlotOptions | None = None, **kwargs: Any) -> list[PlotFigure]:
    """Every applicable figure of a results directory as :class:`PlotFigure` (stem, figure,
    title, caption; iterates as ``(stem, figure)``). ``overview``: also the panel grid of
    every recorded metric (``metrics_overview``). Options (:class:`PlotOptions`, or its
    fields as keywords): ``style`` (``screen`` | ``paper``), ``band`` (``se`` | ``ci95``),
    ``update_all``, ``reported``, ``titles``."""
    opts = _options(options, kwargs)
    res = load_results(results_dir)
    if res.dynamics == "population":  # its own figure types
        from userchoice.plots_population import population_figures

        with _rc(opts):
            return population_figures(res, opts)
    if res.dynamics == "equilibrium":
        from userchoice.plots_equilibrium import equilibrium_figures

        with _rc(opts):
            return equilibrium_figures(res, opts)
    frame = res.learners
    if res.metric is None or not len(frame):
        return []
    several_p = frame["p"].nunique() > 1
    # (kind, drawing function, conditions it puts on an axis, whether a slice gets one)
    kinds: list[tuple[str, Callable[..., PlotFigure], list[str],
                      Callable[[pd.DataFrame], bool]]] = [
        ("metric_vs_iteration", fig_metric_vs_iteration, ["p"], lambda part: True)]
    if several_p:
        kinds.append(("final_vs_p", fig_final_vs_p, ["p", "kappa"], lambda part: True))
    if NPROBE_COLUMN in frame and frame[NPROBE_COLUMN].nunique() > 1 and res.probers():
        kinds.append(("final_vs_nprobe", fig_final_vs_nprobe, ["p", NPROBE_COLUMN],
                      lambda part: bool(part["is_prober"].any())))
    if "market_share" in frame and frame["market_share"].notna().any():
        kinds.append(("market_share_vs_iteration", fig_market_share, ["p"], lambda part: True))
    if several_p:
        kinds.append(("two_prober_comparison", fig_two_prober, ["p"],
                      lambda part: len(res.probers(part)) >= 2 and part["p"].nunique() > 1))
    market = res.market if res.market is not None else pd.DataFrame()
    if "zeta_potential" in market and market["zeta_potential"].notna().any():  # Su & Dean
        kinds.append(("zeta_potential_loglog", fig_zeta_potential, ["zeta"], lambda part: True))
        if "path_length" in frame and frame["path_length"].notna().any():
            kinds.append(("path_length_vs_iteration", fig_path_length, ["zeta"],
                          lambda part: True))
    out: list[PlotFigure] = []
    with _rc(opts):
        for kind, draw, exclude, applies in kinds:
            for where, part in _slices(res, frame, exclude):
                if applies(part):
                    drawn = draw(res, part, where, opts)
                    drawn.stem = _slice_stem(kind, where)
                    out.append(drawn)
        grid = _overview(res, opts) if overview else None
    if grid is not None:
        out.append(grid)
    return out


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats!r}")
    return formats


def save_figure(fig: Figure | PlotFigure, stem: Path, formats: Sequence[str] = FORMATS
                ) -> list[Path]:
    """Write ``stem.<fmt>`` for each format at the figure's resolution (PDFs without a
    creation date, so reruns match)."""
    fig = fig.figure if isinstance(fig, PlotFigure) else fig
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in _check_formats(formats):
        path = stem.with_name(f"{stem.name}.{fmt}")
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, format=fmt, dpi=fig.dpi, metadata=metadata)
        paths.append(path)
    return paths


def figure_png(fig: Figure | PlotFigure, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (for embedding)."""
    fig = fig.figure if isinstance(fig, PlotFigure) else fig
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def plot_results(results_dir: str | Path, out_dir: str | Path | None = None,
                 formats: Sequence[str] = FORMATS, overview: bool = True,
                 options: PlotOptions | None = None, **kwargs: Any) -> list[Path]:
    """Write every applicable figure of ``results_dir`` to ``out_dir`` (default
    ``results_dir/figures``) in each of ``formats``; returns the paths written.
    ``overview=False`` leaves out the every-metric panel grid (``reproduce`` does: it draws
    the paper's figure types, and the grid is the slowest figure to render). Options as in
    :func:`make_figures` (``style``, ``band``, ``update_all``, ``reported``, ``titles``)."""
    formats = _check_formats(formats)
    opts = _options(options, kwargs)
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else res.path / "figures"
    paths: list[Path] = []
    for drawn in make_figures(res, overview=overview, options=opts):
        paths += save_figure(drawn.figure, out / drawn.stem, formats)
    return paths


# ---------------------------------------------------------------------------------------------
# Bad vs good
# ---------------------------------------------------------------------------------------------


def _at_reference(res: Results, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows at the reference value of every condition but p (static values at their largest,
    knobs at their smallest: where ``summary.md`` holds them)."""
    return at_conditions(frame, reference_conditions(frame, res.static_columns))


def plot_bad_vs_good(bad_dir: str | Path, good_dir: str | Path, out_stem: str | Path,
                     formats: Sequence[str] = FORMATS, options: PlotOptions | None = None,
                     **kwargs: Any) -> list[Path]:
    """Bars of each learner's final metric: the bad run at p = 0 (its smallest p), the good run
    at p = 0 and at its best p; the pooled baseline as a horizontal line. Writes
    ``out_stem.<fmt>`` for each format and returns the paths."""
    opts = _options(options, kwargs)
    drawn = fig_bad_vs_good(load_results(bad_dir), load_results(good_dir), opts)
    return save_figure(drawn.figure, Path(out_stem), formats)


# How the three bars of a learner differ (its colour is the learner's): fill, alpha, hatch.
_BAR_LOOKS = ({"fill": False, "hatch": "////", "alpha": 1.0},
              {"fill": True, "hatch": None, "alpha": 0.45},
              {"fill": True, "hatch": None, "alpha": 1.0})


def fig_bad_vs_good(bad: Results, good: Results, opts: PlotOptions | None = None
                    ) -> PlotFigure:
    """The bars of :func:`plot_bad_vs_good`: one group per learner in the learner's colour,
    hatched (bad run), light (good run, smallest p) and solid (good run, best p)."""
    opts = opts or PlotOptions()
    for res, role in ((bad, "bad"), (good, "good")):
        if res.metric is None:
            raise ValueError(f"the {role} results directory {res.path} has no finished runs")
    if bad.metric != good.metric:
        raise ValueError(f"the bad ({bad.metric}) and good ({good.metric}) runs measure "
                         f"different metrics")
    bad_frame = _at_reference(bad, bad.learners)
    bad_frame = bad_frame[bad_frame["p"] == bad_frame["p"].min()]
    good_frame = _at_reference(good, good.learners)
    p_low = float(good_frame["p"].min())
    p_best = good.best_p(good_frame)
    bars = [(f"bad market, p = {_fmt(float(bad_frame['p'].min()))}", bad, bad_frame),
            (f"good market, p = {_fmt(p_low)}", good, good_frame[good_frame["p"] == p_low])]
    if p_best != p_low:
        bars.append((f"good market, best p = {_fmt(p_best)}", good,
                     good_frame[good_frame["p"] == p_best]))
    n = max(_n_learners(bad), _n_learners(good))
    probers = sorted(set(good.probers(good_frame)))
    width = 0.8 / len(bars)
    baseline = good.baseline if good.baseline is not None else bad.baseline
    update_all = _update_all_final(good, good_frame) if opts.update_all else None
    paper_pooled, pooled_handle = _paper_pooled(
        (_config(good).get("reported") or {}) if opts.reported else {}, opts)
    handles = [Patch(facecolor="#777777" if look["fill"] else "white", edgecolor="#555555",
                     alpha=look["alpha"], hatch=look["hatch"], label=label)
               for (label, _, _), look in zip(bars, _BAR_LOOKS, strict=False)]
    handles += _baseline_handle(good, opts, baseline)
    if update_all is not None:
        handles += _update_all_handle(opts)
    handles += pooled_handle
    with _rc(opts):
        fig, (ax,) = _new_figure(opts, 1, handles=handles, single=True)
        x = np.arange(n)
        colors = [learner_color(i) for i in range(n)]
        n_seeds = 0
        for k, (_label, res, frame) in enumerate(bars):
            stats = _stats(final_rows(frame), ["learner"], res.metric, opts)
            n_seeds = max(n_seeds, _n_seeds(stats))
            stats = stats.set_index("learner").reindex(range(n))
            look = _BAR_LOOKS[k % len(_BAR_LOOKS)]
            offsets = x + (k - (len(bars) - 1) / 2) * width
            for i in range(n):
                ax.bar(offsets[i], stats["mean"].iloc[i], width * 0.92,
                       yerr=np.nan_to_num(stats["half"].iloc[i], nan=0.0), capsize=2,
                       color=colors[i] if look["fill"] else "white", edgecolor=colors[i],
                       alpha=look["alpha"], hatch=look["hatch"], linewidth=1.0,
                       error_kw={"elinewidth": 0.8, "ecolor": "black"}, gid=f"learner-{i}")
        if update_all is not None:
            ax.axhline(update_all, **_update_all_style(opts))
        _draw_paper_pooled(ax, paper_pooled, opts)
        _draw_baseline(ax, baseline, opts)
        ax.set_xticks(x, [f"{i}{' (prober)' if i in probers else ''}" for i in range(n)],
                      fontsize=opts.look.small_size)
        for tick, color in zip(ax.get_xticklabels(), colors, strict=True):
            tick.set_color(color)
        ax.set_xlabel("learner", fontsize=opts.look.font_size)
        ax.set_ylabel(f"final {good.metric_label}", fontsize=opts.look.font_size)
        ax.grid(False)
        ax.grid(alpha=0.3, axis="y", linewidth=0.5)
        _legend_below(fig, handles, opts)
        good_title = experiment_title(_config(good))
        both = (good_title.replace("good market", "bad vs good market")
                if "good market" in good_title
                else f"{experiment_title(_config(bad))} vs {good_title}")
        title = f"{textwrap.shorten(both, 90)}\nfinal {good.metric_label} per learner"
        if opts.show_titles:
            fig.suptitle(plain_text(title), fontsize=opts.look.title_size)
    shows = (f"Final {good.metric_label} of each learner (bars in the learner's colour): "
             f"hatched, the bad market ({bad.name}) without probing; light, the good market "
             f"({good.name}) at p = {_fmt(p_low)}"
             + (f"; solid, the good market at its best p = {_fmt(p_best)}"
                if p_best != p_low else ""))
    caption = _caption(good, shows, opts, n_seeds, baseline)
    return PlotFigure(f"{bad.name}_vs_{good.name}", fig, title.replace("\n", ": "), caption)
