"""Figures of a results directory (SPEC §8): metric vs iteration, final metric vs p / N_probe,
market shares, the two-prober comparison, an overview of every recorded metric and the
bad-vs-good outcome.

Every figure reads a :class:`~userchoice.analysis.Results` (the tidy tables of a results
directory, runs whose status is ``done`` only: diverged and failed runs never enter a mean) and
shows the mean across seeds ± its standard error, computed by ``userchoice.analysis``. The
primary metric is ``analysis.primary_metric`` (the global ``test_accuracy`` for classifiers,
the global ``test_loss`` otherwise); ``metrics_overview`` has a panel for every metric of the
metric table that the results hold. Figures are matplotlib ``Figure`` objects drawn with the
Agg machinery (no pyplot global state), written as PNG and PDF.

A figure type that does not apply to an experiment is skipped (no p grid → no ``final_vs_p``).
When further conditions vary (κ, static values such as ``probing.n_probe``, other knobs), a
figure that does not put them on an axis is drawn once per combination, the combination in its
title and file name.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from userchoice.analysis import (
    Results,
    at_conditions,
    final_rows,
    load_results,
    recorded_metrics,
    reference_conditions,
    seed_stats,
)
from userchoice.knobs import KNOBS
from userchoice.metrics import METRICS

FORMATS = ("png", "pdf")
FIGURE_KINDS = ("metric_vs_iteration", "final_vs_p", "final_vs_nprobe",
                "market_share_vs_iteration", "two_prober_comparison", "metrics_overview")
NPROBE_COLUMN = "probing_n_probe"

_DISPLAY = {**{k.name: k.display for k in KNOBS}, NPROBE_COLUMN: "N_probe",
            "probing_probe_batch": "P"}
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


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


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    if n > 20:
        return [cmap(i / max(1, n - 1)) for i in range(n)]
    return [cmap(i) for i in range(n)]


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


def _draw_baseline(ax, res: Results, label: bool = True) -> None:
    if res.baseline is not None:
        ax.axhline(res.baseline, color="black", linestyle="--", linewidth=1.2,
                   label="pooled baseline" if label else None)


def _baseline_handle(res: Results) -> list:
    if res.baseline is None:
        return []
    return [Line2D([], [], color="black", linestyle="--", linewidth=1.2,
                   label=f"pooled baseline ({res.baseline:.3g})")]


def _new_figure(n_panels: int, ncols: int | None = None, panel: tuple[float, float] = (4.6, 3.4),
                legend_rows: int = 0, sharey: bool = True) -> tuple[Figure, np.ndarray]:
    ncols = ncols or min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel[0] * ncols + 0.4, panel[1] * nrows + 0.9 + 0.22 * legend_rows),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _legend_below(fig: Figure, handles: list) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside lower center",
                   ncols=min(4, len(handles)), fontsize=8, frameon=False)


def _title(fig: Figure, res: Results, text: str, where: dict[str, Any]) -> None:
    extra = f" — {_slice_title(where)}" if where else ""
    fig.suptitle(f"{plain_text(res.name)}: {text}{plain_text(extra)}", fontsize=11)


def _band(ax, x, mean, sem, color, **line) -> None:
    ax.plot(x, mean, color=color, **line)
    sem = np.nan_to_num(np.asarray(sem, float), nan=0.0)
    if np.any(sem > 0):
        ax.fill_between(x, mean - sem, mean + sem, color=color, alpha=0.18, linewidth=0)


def _learner_handles(res: Results, learners: Sequence[int], probers: Sequence[int],
                     colors: list) -> list:
    return [Line2D([], [], color=colors[i], linewidth=2.4 if i in probers else 1.4,
                   marker="o" if i in probers else None,
                   label=_learner_label(res, i, probers)) for i in learners]


# ---------------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------------


def fig_metric_vs_iteration(res: Results, frame: pd.DataFrame, where: dict[str, Any]) -> Figure:
    """Per-learner metric vs step, one panel per p, mean ± SE band over seeds."""
    ps = sorted(frame["p"].unique())
    learners = sorted(int(v) for v in frame["learner"].unique())
    probers, colors = res.probers(frame), _colors(_n_learners(res))
    handles = [*_learner_handles(res, learners, probers, colors), *_baseline_handle(res)]
    fig, axes = _new_figure(len(ps), legend_rows=math.ceil(len(handles) / 4))
    stats = seed_stats(frame, ["p", "learner", "step"], res.metric)
    for ax, p in zip(axes, ps, strict=True):
        for i in learners:
            s = stats[(stats["p"] == p) & (stats["learner"] == i)]
            _band(ax, s["step"].to_numpy(), s["mean"].to_numpy(), s["sem"].to_numpy(),
                  colors[i], linewidth=2.4 if i in probers else 1.4,
                  marker="o" if i in probers else None, markersize=3)
        _draw_baseline(ax, res, label=False)
        ax.set_title(f"p = {_fmt(p)}", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(res.metric_label)
    n_seeds = int(stats["n"].max()) if len(stats) else 0
    _title(fig, res, f"{res.metric_label} vs iteration (mean ± SE over {n_seeds} seeds)", where)
    _legend_below(fig, handles)
    return fig


def fig_final_vs_p(res: Results, frame: pd.DataFrame, where: dict[str, Any]) -> Figure:
    """Final metric vs p per learner (colour), one line style per κ."""
    final = final_rows(frame)
    stats = seed_stats(final, ["kappa", "learner", "p"], res.metric)
    kappas = sorted(stats["kappa"].unique())
    learners = sorted(int(v) for v in stats["learner"].unique())
    probers, colors = res.probers(frame), _colors(_n_learners(res))
    handles = _learner_handles(res, learners, probers, colors)
    if len(kappas) > 1:
        handles += [Line2D([], [], color="gray", linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                           label=f"κ = {_fmt(kappa)}") for k, kappa in enumerate(kappas)]
    handles += _baseline_handle(res)
    fig, (ax,) = _new_figure(1, panel=(6.4, 4.2), legend_rows=math.ceil(len(handles) / 4))
    for k, kappa in enumerate(kappas):
        for i in learners:
            s = stats[(stats["kappa"] == kappa) & (stats["learner"] == i)]
            ax.errorbar(s["p"], s["mean"], yerr=s["sem"].fillna(0.0), color=colors[i],
                        linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                        linewidth=2.4 if i in probers else 1.4,
                        marker="o" if i in probers else "s", markersize=4, capsize=3)
    _draw_baseline(ax, res, label=False)
    ax.set_xlabel("probing weight p")
    ax.set_ylabel(f"final {res.metric_label}")
    ax.grid(alpha=0.3)
    _title(fig, res, "final metric vs p (mean ± SE)", where)
    _legend_below(fig, handles)
    return fig


def fig_final_vs_nprobe(res: Results, frame: pd.DataFrame, where: dict[str, Any]) -> Figure:
    """Probers' final metric vs N_probe (mean ± SE) and its spread across seeds."""
    final = final_rows(frame)
    final = final[final["is_prober"].astype(bool)]
    if (final["p"] > 0).any():  # at p = 0 the probe set is unused
        final = final[final["p"] > 0]
    stats = seed_stats(final, ["p", "learner", NPROBE_COLUMN], res.metric)
    colors = _colors(_n_learners(res))
    ps = sorted(stats["p"].unique())
    learners = sorted(int(v) for v in stats["learner"].unique())
    fig, axes = _new_figure(2, ncols=2, panel=(4.8, 3.8), legend_rows=2, sharey=False)
    handles = []
    for k, p in enumerate(ps):
        for i in learners:
            s = stats[(stats["p"] == p) & (stats["learner"] == i)]
            style = dict(color=colors[i], linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                         marker="o", markersize=4)
            axes[0].errorbar(s[NPROBE_COLUMN], s["mean"], yerr=s["sem"].fillna(0.0),
                             capsize=3, **style)
            axes[1].plot(s[NPROBE_COLUMN], s["std"], **style)
            handles.append(Line2D([], [], **style,
                                  label=f"{plain_text(res.learner_name(i))}, p = {_fmt(p)}"))
    handles += _baseline_handle(res)
    _draw_baseline(axes[0], res, label=False)
    values = np.unique(stats[NPROBE_COLUMN].to_numpy(float))
    for ax in axes:
        if len(values) and values.min() > 0 and values.max() / values.min() >= 10:
            ax.set_xscale("log")
            ax.set_xticks(values, [_fmt(v) for v in values])
            ax.minorticks_off()
        ax.set_xlabel("N_probe (probe-set size)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"final {res.metric_label}")
    axes[0].set_title("mean ± SE over seeds", fontsize=10)
    axes[1].set_ylabel("standard deviation across seeds")
    axes[1].set_title("spread across seeds", fontsize=10)
    _title(fig, res, "probers' final metric vs N_probe", where)
    _legend_below(fig, handles)
    return fig


def fig_market_share(res: Results, frame: pd.DataFrame, where: dict[str, Any]) -> Figure:
    """market_share (expected share of the test users, solid, ± SE) and batch_share (share of
    the arriving batches since the previous evaluation, dashed) per learner vs step, for the
    smallest and the largest p."""
    ps = sorted(frame["p"].unique())
    ps = [ps[0], ps[-1]] if len(ps) > 1 else ps
    learners = sorted(int(v) for v in frame["learner"].unique())
    probers, colors = res.probers(frame), _colors(_n_learners(res))
    has_batch = "batch_share" in frame and frame["batch_share"].notna().any()
    handles = _learner_handles(res, learners, probers, colors)
    handles.append(Line2D([], [], color="gray", label="market share (expected, test users)"))
    if has_batch:
        handles.append(Line2D([], [], color="gray", linestyle="--",
                              label="batch share (mean since last eval)"))
    fig, axes = _new_figure(len(ps), ncols=len(ps), legend_rows=math.ceil(len(handles) / 4))
    share = seed_stats(frame, ["p", "learner", "step"], "market_share")
    batch = seed_stats(frame, ["p", "learner", "step"], "batch_share") if has_batch else None
    for ax, p in zip(axes, ps, strict=True):
        for i in learners:
            s = share[(share["p"] == p) & (share["learner"] == i)]
            _band(ax, s["step"].to_numpy(), s["mean"].to_numpy(), s["sem"].to_numpy(),
                  colors[i], linewidth=2.0 if i in probers else 1.4)
            if batch is not None:
                b = batch[(batch["p"] == p) & (batch["learner"] == i)]
                ax.plot(b["step"], b["mean"], color=colors[i], linestyle="--", linewidth=1.0,
                        alpha=0.8)
        ax.set_title(f"p = {_fmt(p)}", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of users choosing the learner")
    _title(fig, res, "market share vs iteration (mean over seeds)", where)
    _legend_below(fig, handles)
    return fig


def fig_two_prober(res: Results, frame: pd.DataFrame, where: dict[str, Any]) -> Figure:
    """Final metric vs p, probers (solid) vs non-probers (dashed), and each learner's change
    from its value at the smallest p."""
    final = final_rows(frame)
    stats = seed_stats(final, ["learner", "p"], res.metric)
    learners = sorted(int(v) for v in stats["learner"].unique())
    probers, colors = res.probers(frame), _colors(_n_learners(res))
    p0 = stats["p"].min()
    fig, axes = _new_figure(2, ncols=2, panel=(4.8, 3.8), legend_rows=3, sharey=False)
    handles = []
    for i in learners:
        s = stats[stats["learner"] == i].sort_values("p")
        is_prober = i in probers
        style = dict(color=colors[i], linestyle="-" if is_prober else "--",
                     linewidth=2.4 if is_prober else 1.3, marker="o" if is_prober else "s",
                     markersize=4)
        axes[0].errorbar(s["p"], s["mean"], yerr=s["sem"].fillna(0.0), capsize=3, **style)
        start = s.loc[s["p"] == p0, "mean"]
        if len(start):
            axes[1].plot(s["p"], s["mean"] - float(start.iloc[0]), **style)
        handles.append(Line2D([], [], **style, label=_learner_label(res, i, probers)))
    handles += _baseline_handle(res)
    _draw_baseline(axes[0], res, label=False)
    axes[1].axhline(0.0, color="gray", linewidth=0.8)
    for ax in axes:
        ax.set_xlabel("probing weight p")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"final {res.metric_label}")
    axes[0].set_title("final metric (mean ± SE)", fontsize=10)
    axes[1].set_ylabel(f"change from p = {_fmt(p0)}")
    axes[1].set_title("gain relative to the smallest p", fontsize=10)
    _title(fig, res, f"{len(probers)} probers vs non-probers", where)
    _legend_below(fig, handles)
    return fig


def fig_metrics_overview(res: Results, learners: pd.DataFrame, market: pd.DataFrame | None,
                         where: dict[str, Any]) -> Figure:
    """One small panel per recorded metric of the metric table (learner and prober kinds: one
    line per learner; market kind: one line), mean ± SE over seeds vs step, titled with the
    metric's display label; the pooled baseline where the manifest records that metric."""
    names = recorded_metrics(learners, ("learner", "prober"))
    market_names = recorded_metrics(market, ("market",)) if market is not None else []
    learner_ids = sorted(int(v) for v in learners["learner"].unique())
    probers, colors = res.probers(learners), _colors(_n_learners(res))
    handles = _learner_handles(res, learner_ids, probers, colors)
    if market_names:
        handles.append(Line2D([], [], color="black", linewidth=1.4, label="market-wide"))
    if any(res.baseline_of(n) is not None for n in [*names, *market_names]):
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1.0,
                              label="pooled baseline"))
    n_panels = len(names) + len(market_names)
    fig, axes = _new_figure(n_panels, ncols=min(n_panels, 4), panel=(3.3, 2.5),
                            legend_rows=math.ceil(len(handles) / 4), sharey=False)
    n_seeds = 0
    for ax, name in zip(axes, [*names, *market_names], strict=True):
        if name in names:
            stats = seed_stats(learners, ["learner", "step"], name)
            for i in learner_ids:
                s = stats[stats["learner"] == i]
                _band(ax, s["step"].to_numpy(), s["mean"].to_numpy(), s["sem"].to_numpy(),
                      colors[i], linewidth=1.8 if i in probers else 1.2)
        else:
            stats = seed_stats(market, ["step"], name)
            _band(ax, stats["step"].to_numpy(), stats["mean"].to_numpy(),
                  stats["sem"].to_numpy(), "black", linewidth=1.4)
        n_seeds = max(n_seeds, int(stats["n"].max()) if len(stats) else 0)
        baseline = res.baseline_of(name)
        if baseline is not None:
            ax.axhline(baseline, color="black", linestyle="--", linewidth=1.0)
        metric = METRICS.get(name)
        ax.set_title(metric.display + (" (market)" if metric.kind == "market" else ""),
                     fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    _title(fig, res, f"every recorded metric vs iteration (mean ± SE over {n_seeds} seeds)",
           where)
    _legend_below(fig, handles)
    return fig


def _overview(res: Results) -> tuple[str, Figure] | None:
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
    return "metrics_overview", fig_metrics_overview(res, learners, market, shown)


def make_figures(results_dir: Results | str | Path, overview: bool = True
                 ) -> list[tuple[str, Figure]]:
    """Every applicable figure of a results directory as (file stem, Figure); ``overview``:
    also the panel grid of every recorded metric (``metrics_overview``)."""
    res = load_results(results_dir)
    frame = res.learners
    if res.metric is None or not len(frame):
        return []
    out: list[tuple[str, Figure]] = []
    for where, part in _slices(res, frame, ["p"]):
        out.append((_slice_stem("metric_vs_iteration", where),
                    fig_metric_vs_iteration(res, part, where)))
    if frame["p"].nunique() > 1:
        for where, part in _slices(res, frame, ["p", "kappa"]):
            out.append((_slice_stem("final_vs_p", where), fig_final_vs_p(res, part, where)))
    if NPROBE_COLUMN in frame and frame[NPROBE_COLUMN].nunique() > 1 and res.probers():
        for where, part in _slices(res, frame, ["p", NPROBE_COLUMN]):
            if part["is_prober"].any():
                out.append((_slice_stem("final_vs_nprobe", where),
                            fig_final_vs_nprobe(res, part, where)))
    if "market_share" in frame and frame["market_share"].notna().any():
        for where, part in _slices(res, frame, ["p"]):
            out.append((_slice_stem("market_share_vs_iteration", where),
                        fig_market_share(res, part, where)))
    if frame["p"].nunique() > 1:
        for where, part in _slices(res, frame, ["p"]):
            if len(res.probers(part)) >= 2 and part["p"].nunique() > 1:
                out.append((_slice_stem("two_prober_comparison", where),
                            fig_two_prober(res, part, where)))
    grid = _overview(res) if overview else None
    if grid is not None:
        out.append(grid)
    return out


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats!r}")
    return formats


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem.<fmt>`` for each format (PDFs without a creation date, so reruns match)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in _check_formats(formats):
        path = stem.with_name(f"{stem.name}.{fmt}")
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, format=fmt, dpi=130, metadata=metadata)
        paths.append(path)
    return paths


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """A figure as PNG bytes (for embedding)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def plot_results(results_dir: str | Path, out_dir: str | Path | None = None,
                 formats: Sequence[str] = FORMATS, overview: bool = True) -> list[Path]:
    """Write every applicable figure of ``results_dir`` to ``out_dir`` (default
    ``results_dir/figures``) in each of ``formats``; returns the paths written.
    ``overview=False`` leaves out the every-metric panel grid (``reproduce`` does: it draws
    the paper's figure types, and the grid is the slowest figure to render)."""
    formats = _check_formats(formats)
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else res.path / "figures"
    paths: list[Path] = []
    for stem, fig in make_figures(res, overview=overview):
        paths += save_figure(fig, out / stem, formats)
    return paths


# ---------------------------------------------------------------------------------------------
# Bad vs good
# ---------------------------------------------------------------------------------------------


def _at_reference(res: Results, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows at the reference value of every condition but p (static values at their largest,
    knobs at their smallest: where ``summary.md`` holds them)."""
    return at_conditions(frame, reference_conditions(frame, res.static_columns))


def _final_by_learner(res: Results, frame: pd.DataFrame) -> pd.DataFrame:
    return seed_stats(final_rows(frame), ["learner"], res.metric).set_index("learner")


def plot_bad_vs_good(bad_dir: str | Path, good_dir: str | Path, out_stem: str | Path,
                     formats: Sequence[str] = FORMATS) -> list[Path]:
    """Bars of each learner's final metric: the bad run at p = 0 (its smallest p), the good run
    at p = 0 and at its best p; the pooled baseline as a horizontal line. Writes
    ``out_stem.<fmt>`` for each format and returns the paths."""
    fig = fig_bad_vs_good(load_results(bad_dir), load_results(good_dir))
    return save_figure(fig, Path(out_stem), formats)


def fig_bad_vs_good(bad: Results, good: Results) -> Figure:
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
    bars = [(f"bad (p = {_fmt(float(bad_frame['p'].min()))})", bad, bad_frame),
            (f"good, p = {_fmt(p_low)}", good, good_frame[good_frame["p"] == p_low])]
    if p_best != p_low:
        bars.append((f"good, best p = {_fmt(p_best)}", good,
                     good_frame[good_frame["p"] == p_best]))
    n = max(_n_learners(bad), _n_learners(good))
    probers = sorted(set(good.probers(good_frame)))
    width = 0.8 / len(bars)
    fig = Figure(figsize=(max(7.0, 1.1 * n + 2.5), 4.8), layout="constrained")
    ax = fig.subplots()
    palette = ["#c0504d", "#8eb4e3", "#1f4e79"]
    x = np.arange(n)
    for k, (label, res, frame) in enumerate(bars):
        stats = _final_by_learner(res, frame).reindex(range(n))
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, stats["mean"], width * 0.95,
               yerr=stats["sem"].fillna(0.0), capsize=3, color=palette[k % 3], label=label)
    baseline = good.baseline if good.baseline is not None else bad.baseline
    if baseline is not None:
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1.4,
                   label=f"pooled baseline ({baseline:.3g})")
    ax.set_xticks(x, [f"{i}{' (prober)' if i in probers else ''}" for i in range(n)],
                  fontsize=8)
    ax.set_xlabel("learner")
    ax.set_ylabel(f"final {good.metric_label}")
    ax.grid(alpha=0.3, axis="y")
    fig.legend(fontsize=8, loc="outside lower center", ncols=4, frameon=False)
    fig.suptitle(f"bad ({plain_text(bad.name)}) vs good ({plain_text(good.name)}): final "
                 f"metric per learner "
                 f"(mean ± SE)", fontsize=11)
    return fig
