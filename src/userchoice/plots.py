"""Figures of a results directory (SPEC §8): metric vs iteration, final metric vs p / N_probe,
market shares, the two-prober comparison and the bad-vs-good outcome.

Every figure reads the tidy tables of :class:`~userchoice.experiments.store.ResultsDir`, keeps
only runs whose status is ``done`` (diverged and failed runs never enter a mean) and shows the
mean across seeds ± its standard error. The primary metric is the global ``test_accuracy`` for
classifiers and the global ``test_loss`` otherwise. Figures are matplotlib ``Figure`` objects
drawn with the Agg machinery (no pyplot global state), written as PNG and PDF.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from userchoice.experiments.plan import KNOB_NAMES
from userchoice.experiments.store import ResultsDir

FORMATS = ("png", "pdf")
RUN_COLUMNS = ("run_id", "group", "seed", "chunk", "seconds", "status", "reason",
               "diverged_step")
CONDITION_KNOBS = tuple(k for k in KNOB_NAMES if k != "seed")  # tau, p, kappa, eta, …
FIGURE_KINDS = ("metric_vs_iteration", "final_vs_p", "final_vs_nprobe",
                "market_share_vs_iteration", "two_prober_comparison")
NPROBE_COLUMN = "probing_n_probe"

_DISPLAY = {"tau": "τ", "p": "p", "kappa": "κ", "eta": "η", "lam": "λ", "zeta": "ζ",
            "temperature": "temperature", NPROBE_COLUMN: "N_probe",
            "probing_probe_batch": "P"}
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


# ---------------------------------------------------------------------------------------------
# Loading: one object with the done rows, the primary metric and the conditions of a sweep
# ---------------------------------------------------------------------------------------------


@dataclass
class Results:
    """What the figures and the report need from one results directory."""

    path: Path
    manifest: dict[str, Any]
    runs: pd.DataFrame       # every finished run (done, diverged, failed)
    learners: pd.DataFrame   # learner rows of ``done`` runs, joined with their run's columns
    metric: str | None       # "test_accuracy" | "test_loss" (None: no done rows)
    static_columns: list[str]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "test_accuracy"

    @property
    def metric_label(self) -> str:
        return metric_label(self.metric, self.family)

    @property
    def family(self) -> str | None:
        return ((self.manifest.get("config") or {}).get("learner") or {}).get("family")

    @property
    def baseline(self) -> float | None:
        value = (self.manifest.get("baseline") or {}).get(self.metric or "")
        return None if value is None or not np.isfinite(value) else float(value)

    @property
    def conditions(self) -> list[str]:
        """Columns that define a condition (everything but the seed): static values, p, κ and
        any other knob that varies across the sweep."""
        varying = [k for k in CONDITION_KNOBS if k in self.runs
                   and (k in ("p", "kappa") or self.runs[k].nunique(dropna=False) > 1)]
        return [*self.static_columns, *varying]

    def varying(self, frame: pd.DataFrame | None = None) -> list[str]:
        frame = self.runs if frame is None else frame
        return [c for c in self.conditions if c in frame and frame[c].nunique(dropna=False) > 1]

    def learner_name(self, learner: int) -> str:
        names = (self.manifest.get("market_provenance") or {}).get("categories")
        n = self.manifest.get("n_learners")
        if isinstance(names, list) and len(names) == n and 0 <= learner < len(names):
            return f"learner {learner} ({names[learner]})"
        return f"learner {learner}"

    def probers(self, frame: pd.DataFrame | None = None) -> list[int]:
        frame = self.learners if frame is None else frame
        if not len(frame) or "is_prober" not in frame:
            return []
        return sorted(int(v) for v in frame.loc[frame["is_prober"].astype(bool), "learner"]
                      .unique())


def metric_label(metric: str | None, family: str | None = None) -> str:
    if metric == "test_accuracy":
        return "global test accuracy"
    if family == "squared":
        return "global test MSE (global risk)"
    if family == "masked_multi_squared":
        return "global test masked MSE (global risk)"
    return "global test loss (global risk)"


def primary_metric(learners: pd.DataFrame) -> str | None:
    """``test_accuracy`` where the table has it (classifiers), else ``test_loss``."""
    if "test_accuracy" in learners and learners["test_accuracy"].notna().any():
        return "test_accuracy"
    if "test_loss" in learners:
        return "test_loss"
    return None


def _hashable(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Static values that are lists (e.g. a ``probing.probers`` grid) → tuples, so they group."""
    for column in columns:
        if column in frame and frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: tuple(np.asarray(v).tolist()) if isinstance(v, list | np.ndarray)
                else v)
    return frame


def load_results(results_dir: str | Path) -> Results:
    store = ResultsDir(Path(results_dir))
    manifest = store.read_manifest()
    runs = store.table("runs")
    static = [c for c in runs.columns if c not in RUN_COLUMNS and c not in KNOB_NAMES]
    runs = _hashable(runs, static)
    learners = store.joined("learners")
    if len(learners):
        learners = _hashable(learners, static)
        learners = learners[learners["status"] == "done"].reset_index(drop=True)
    metric = primary_metric(learners) if len(learners) else None
    return Results(store.path, manifest, runs, learners, metric, static)


def _as_results(results: Results | str | Path) -> Results:
    return results if isinstance(results, Results) else load_results(results)


# ---------------------------------------------------------------------------------------------
# Final values and seed statistics
# ---------------------------------------------------------------------------------------------


def final_rows(learners: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows at its last evaluation step."""
    if not len(learners):
        return learners
    last = learners.groupby("run_id")["step"].transform("max")
    return learners[learners["step"] == last]


def _seed_stats(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean, standard error (ddof 1; NaN for one seed) and count of ``value`` per ``keys``."""
    stats = (frame.groupby(keys, dropna=False, sort=True)[value]
             .agg(mean="mean", sem="sem", std="std", n="count").reset_index())
    return stats[stats["n"] > 0].reset_index(drop=True)


def final_summary(results_dir: Results | str | Path) -> pd.DataFrame:
    """Final primary metric per condition × learner, across seeds, done runs only.

    Columns: the static values (one per ``static_grid`` key), ``p``, ``kappa``, every other knob
    that varies in the sweep, ``learner``, ``is_prober``, then ``mean``, ``sem`` (standard error,
    ddof 1; NaN with one seed), ``n`` (seeds) and ``metric`` (the metric's column name).
    Empty (with those columns) when no run finished.
    """
    res = _as_results(results_dir)
    keys = [*res.conditions, "learner", "is_prober"]
    columns = [*keys, "mean", "sem", "n", "metric"]
    if res.metric is None:
        return pd.DataFrame(columns=columns)
    stats = _seed_stats(final_rows(res.learners), keys, res.metric)
    stats["n"] = stats["n"].astype(int)
    stats["metric"] = res.metric
    return stats[columns]


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


def _learner_label(res: Results, learner: int, probers: Sequence[int]) -> str:
    name = res.learner_name(learner)
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
    fig.suptitle(f"{res.name}: {text}{extra}", fontsize=11)


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
    stats = _seed_stats(frame, ["p", "learner", "step"], res.metric)
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
    stats = _seed_stats(final, ["kappa", "learner", "p"], res.metric)
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
    stats = _seed_stats(final, ["p", "learner", NPROBE_COLUMN], res.metric)
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
                                  label=f"{res.learner_name(i)}, p = {_fmt(p)}"))
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
    share = _seed_stats(frame, ["p", "learner", "step"], "market_share")
    batch = _seed_stats(frame, ["p", "learner", "step"], "batch_share") if has_batch else None
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
    stats = _seed_stats(final, ["learner", "p"], res.metric)
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


def make_figures(results_dir: Results | str | Path) -> list[tuple[str, Figure]]:
    """Every applicable figure of a results directory as (file stem, Figure)."""
    res = _as_results(results_dir)
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
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write every applicable figure of ``results_dir`` to ``out_dir`` (default
    ``results_dir/figures``) in each of ``formats``; returns the paths written."""
    formats = _check_formats(formats)
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else res.path / "figures"
    paths: list[Path] = []
    for stem, fig in make_figures(res):
        paths += save_figure(fig, out / stem, formats)
    return paths


# ---------------------------------------------------------------------------------------------
# Bad vs good
# ---------------------------------------------------------------------------------------------


def _at_first_conditions(res: Results, frame: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    """Rows at the smallest value of every varying condition not in ``keep`` (κ = 0 …)."""
    for column in res.varying(frame):
        if column not in keep:
            frame = frame[frame[column] == min(frame[column].unique())]
    return frame


def _final_by_learner(res: Results, frame: pd.DataFrame) -> pd.DataFrame:
    return _seed_stats(final_rows(frame), ["learner"], res.metric).set_index("learner")


def best_p(res: Results, frame: pd.DataFrame | None = None) -> float:
    """The p with the best mean final metric of the probers (of all learners without any)."""
    frame = res.learners if frame is None else frame
    final = final_rows(frame)
    if final["is_prober"].any():
        final = final[final["is_prober"].astype(bool)]
    means = final.groupby("p")[res.metric].mean()
    return float(means.idxmax() if res.higher_is_better else means.idxmin())


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
    bad_frame = _at_first_conditions(bad, bad.learners, [])
    bad_frame = bad_frame[bad_frame["p"] == bad_frame["p"].min()]
    good_frame = _at_first_conditions(good, good.learners, ["p"])
    p_low = float(good_frame["p"].min())
    p_best = best_p(good, good_frame)
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
    fig.suptitle(f"bad ({bad.name}) vs good ({good.name}): final metric per learner "
                 f"(mean ± SE)", fontsize=11)
    return fig
