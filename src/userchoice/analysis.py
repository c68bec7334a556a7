"""Results analysis: grouped mean ± standard error, final values, the primary metric, the best
p and the gap closed by probing — one definition used by the figures (``plots``), the HTML
report (``report``), ``summary.md`` (``reproduce``) and the demo; the grouped statistic itself is
``stats.seed_stats`` (also behind ``SimulationResult.summarise``).

Everything here is a pure function over the tidy results frames (one row per run × step ×
learner, or run × step for the market table; knobs, static values and status joined on), except
:func:`load_results`, which reads a results directory into a :class:`Results`. Metric names,
kinds, labels and directions come from THE metric table (``userchoice.metrics.METRICS``), knob
names from THE knob table (``userchoice.knobs``): a metric added to the table is analysed,
plotted and reported with no other edit.

Statistics are across seeds: ``mean``, ``sem`` (standard error of the mean, ddof 1; NaN with
one seed), ``std`` (ddof 1) and ``n`` (the number of non-missing values), computed by pandas
(``groupby(keys).agg(mean, sem, std, count)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from userchoice.knobs import KNOB_NAMES, SCALAR_KNOBS
from userchoice.metrics import METRICS
from userchoice.stats import STAT_COLUMNS, seed_stats

# Columns of the runs table that are bookkeeping, not conditions.
RUN_COLUMNS = ("run_id", "group", "seed", "chunk", "seconds", "status", "reason",
               "diverged_step")
# Knobs that define a condition (everything but the seed): tau, p, kappa, eta, …
CONDITION_KNOBS = tuple(k for k in SCALAR_KNOBS if k != "seed")
# How a family names its loss in labels (display only; the metric table names the metric).
_LOSS_NAMES = {"squared": "MSE", "masked_multi_squared": "masked MSE"}


# ---------------------------------------------------------------------------------------------
# Seed statistics
# ---------------------------------------------------------------------------------------------


def stats_lookup(frame: pd.DataFrame, keys: Sequence[str], value: str
                 ) -> dict[Any, dict[str, float]]:
    """:func:`seed_stats` as a mapping: key (a tuple for several keys, else the value itself)
    → ``{"mean", "sem", "std", "n"}``."""
    keys = list(keys)
    out: dict[Any, dict[str, float]] = {}
    for record in seed_stats(frame, keys, value).to_dict("records"):
        key = tuple(_plain(record[k]) for k in keys)
        out[key if len(keys) != 1 else key[0]] = {
            "mean": float(record["mean"]), "sem": float(record["sem"]),
            "std": float(record["std"]), "n": int(record["n"])}
    return out


def stat_of(frame: pd.DataFrame, value: str) -> dict[str, float] | None:
    """:func:`seed_stats` of all of ``frame``'s ``value`` pooled (None when it has none)."""
    return stats_lookup(frame, [], value).get(())


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def gap_closed(p0: float | None, best: float | None, pooled: float | None) -> float:
    """(best − p0) / (pooled − p0): the fraction of the gap between a learner without probing
    (``p0``) and the pooled baseline that probing (``best``) closes. 1 means it reaches the
    baseline, 0 no change, < 0 worse; NaN when a value is missing or ``pooled == p0``. The
    same formula serves losses and accuracies."""
    if p0 is None or best is None or pooled is None:
        return math.nan
    p0, best, pooled = float(p0), float(best), float(pooled)
    if not all(map(math.isfinite, (p0, best, pooled))) or pooled == p0:
        return math.nan
    return (best - p0) / (pooled - p0)


# ---------------------------------------------------------------------------------------------
# Metrics (from THE metric table)
# ---------------------------------------------------------------------------------------------


def has_values(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and bool(frame[column].notna().any())


def recorded_metrics(frame: pd.DataFrame, kinds: Iterable[str] = ("learner", "prober")
                     ) -> list[str]:
    """The table's metrics of ``kinds`` that ``frame`` holds values of, in table order."""
    kinds = set(kinds)
    return [name for name, metric in METRICS.items()
            if metric.kind in kinds and has_values(frame, name)]


def higher_is_better(metric: str | None) -> bool:
    return metric in METRICS and METRICS.get(metric).higher_is_better


def primary_metric(learners: pd.DataFrame, preferred: str | None = None) -> str | None:
    """The metric summaries and figures lead with: ``preferred`` if it is a learner metric of
    the table with values in ``learners``; else the table's first higher-is-better learner
    metric with values (``test_accuracy`` for classifiers); else its first learner metric with
    values (``test_loss``). None when there is none."""
    present = recorded_metrics(learners, ("learner",))
    if preferred in present:
        return preferred
    better = [name for name in present if METRICS.get(name).higher_is_better]
    return (better or present or [None])[0]


def metric_label(metric: str | None, family: str | None = None) -> str:
    """How figures and tables name a metric: its ``display`` label from the table, a loss named
    after the family's (e.g. MSE for ``squared``)."""
    if metric is None:
        return "metric"
    label = METRICS.get(metric).display if metric in METRICS else metric.replace("_", " ")
    loss = _LOSS_NAMES.get(family or "")
    return label.replace("loss", loss) if loss and "loss" in label else label


# ---------------------------------------------------------------------------------------------
# Final values, conditions, best p
# ---------------------------------------------------------------------------------------------


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows at its last evaluation step."""
    if not len(frame):
        return frame
    last = frame.groupby("run_id")["step"].transform("max")
    return frame[frame["step"] == last]


def probers(frame: pd.DataFrame) -> list[int]:
    """The learners flagged ``is_prober`` in ``frame``, sorted."""
    if not len(frame) or "is_prober" not in frame:
        return []
    return sorted(int(v) for v in frame.loc[frame["is_prober"].astype(bool), "learner"].unique())


def p_values(frame: pd.DataFrame) -> list[float]:
    return sorted(float(v) for v in frame["p"].dropna().unique()) if "p" in frame else []


def best_p(frame: pd.DataFrame, metric: str, higher: bool | None = None) -> float:
    """The p with the best mean final ``metric`` of the probers (of all learners when none
    probes), pooled over probers and seeds. ``higher`` defaults to the table's direction."""
    final = final_rows(frame)
    if "is_prober" in final and final["is_prober"].astype(bool).any():
        final = final[final["is_prober"].astype(bool)]
    means = final.groupby("p")[metric].mean().dropna()
    if not len(means):
        raise ValueError(f"no final {metric} values to pick a best p from")
    higher = higher_is_better(metric) if higher is None else higher
    return float(means.idxmax() if higher else means.idxmin())


def varying(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``columns`` of ``frame`` that take more than one value."""
    return [c for c in columns if c in frame and frame[c].nunique(dropna=False) > 1]


def reference_conditions(frame: pd.DataFrame, static: Sequence[str],
                         knobs: Sequence[str] = CONDITION_KNOBS) -> dict[str, Any]:
    """Where to hold the conditions other than p: static grid values (e.g. N_probe) at their
    largest, knobs (κ, ζ, η, …) at their smallest. ``p`` and ``seed`` are never held."""
    reference: dict[str, Any] = {}
    for column in [*static, *(k for k in knobs if k not in ("p", "seed"))]:
        if column in frame:
            values = sorted(frame[column].dropna().unique())
            if values:
                reference[column] = _plain(values[-1] if column in static else values[0])
    return reference


def at_conditions(frame: pd.DataFrame, where: Mapping[str, Any],
                  skip: Iterable[str] = ()) -> pd.DataFrame:
    """The rows of ``frame`` where every column of ``where`` (but those in ``skip``) equals its
    value."""
    skip = set(skip)
    for column, value in where.items():
        if column not in skip and column in frame:
            frame = frame[frame[column] == value]
    return frame


def final_metrics(frame: pd.DataFrame, keys: Sequence[str],
                  metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Final value statistics of several metrics at once: columns ``keys``, ``metric``, then
    the :func:`seed_stats` columns. ``metrics`` defaults to every table metric of ``frame``
    (learner, prober and market kinds)."""
    keys = list(keys)
    metrics = list(recorded_metrics(frame, ("learner", "prober", "market"))
                   if metrics is None else metrics)
    final = final_rows(frame)
    if not len(final) or not metrics:
        return pd.DataFrame(columns=[*keys, "metric", *STAT_COLUMNS])
    long = final[[*keys, *metrics]].melt(id_vars=keys, value_vars=metrics, var_name="metric")
    stats = seed_stats(long, [*keys, "metric"], "value")
    # conditions in sorted order (as grouped), metrics within each in table order
    rank = stats["metric"].map({m: i for i, m in enumerate(metrics)})
    block = (stats.groupby(keys, sort=False, dropna=False).ngroup() if keys
             else pd.Series(0, index=stats.index))
    order = np.lexsort((rank.to_numpy(), block.to_numpy()))
    return stats.iloc[order].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Results directories
# ---------------------------------------------------------------------------------------------


@dataclass
class Results:
    """What the figures, the report and the summary need from one results directory."""

    path: Path
    manifest: dict[str, Any]
    runs: pd.DataFrame       # every finished run (done, diverged, failed)
    learners: pd.DataFrame   # learner rows of ``done`` runs, joined with their run's columns
    metric: str | None       # the primary metric (None: no done rows)
    static_columns: list[str]
    market: pd.DataFrame | None = None  # market rows of ``done`` runs, joined likewise

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def metric_label(self) -> str:
        return metric_label(self.metric, self.family)

    @property
    def family(self) -> str | None:
        return ((self.manifest.get("config") or {}).get("learner") or {}).get("family")

    @property
    def baseline(self) -> float | None:
        return self.baseline_of(self.metric)

    def baseline_of(self, metric: str | None) -> float | None:
        """The pooled baseline's value of ``metric`` (None if not recorded or not finite)."""
        value = (self.manifest.get("baseline") or {}).get(metric or "")
        return None if value is None or not np.isfinite(value) else float(value)

    @property
    def conditions(self) -> list[str]:
        """Columns that define a condition (everything but the seed): static values, p, κ and
        any other knob that varies across the sweep."""
        varying_knobs = [k for k in CONDITION_KNOBS if k in self.runs
                         and (k in ("p", "kappa") or self.runs[k].nunique(dropna=False) > 1)]
        return [*self.static_columns, *varying_knobs]

    def varying(self, frame: pd.DataFrame | None = None) -> list[str]:
        return varying(self.runs if frame is None else frame, self.conditions)

    def learner_name(self, learner: int) -> str:
        names = (self.manifest.get("market_provenance") or {}).get("categories")
        n = self.manifest.get("n_learners")
        if isinstance(names, list) and len(names) == n and 0 <= learner < len(names):
            return f"learner {learner} ({names[learner]})"
        return f"learner {learner}"

    def probers(self, frame: pd.DataFrame | None = None) -> list[int]:
        return probers(self.learners if frame is None else frame)

    def best_p(self, frame: pd.DataFrame | None = None) -> float:
        """:func:`best_p` of the primary metric (over ``frame``, default every done row)."""
        return best_p(self.learners if frame is None else frame, self.metric,
                      self.higher_is_better)


def _hashable(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Static values that are lists (e.g. a ``probing.probers`` grid) → tuples, so they group."""
    for column in columns:
        if column in frame and frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: tuple(np.asarray(v).tolist()) if isinstance(v, list | np.ndarray)
                else v)
    return frame


def _done(frame: pd.DataFrame, static: Sequence[str]) -> pd.DataFrame:
    if not len(frame):
        return frame
    frame = _hashable(frame, static)
    return frame[frame["status"] == "done"].reset_index(drop=True)


def load_results(results_dir: str | Path | Results, preferred: str | None = None) -> Results:
    """Read a results directory: its manifest, runs, and the learner and market rows of its
    ``done`` runs (diverged and failed runs never enter a statistic). ``preferred``: the
    primary metric to use where it has values (see :func:`primary_metric`)."""
    if isinstance(results_dir, Results):
        return results_dir
    from userchoice.experiments.store import ResultsDir  # lazily: analysis sits below it

    store = ResultsDir(Path(results_dir))
    manifest = store.read_manifest()
    runs = store.table("runs")
    static = [c for c in runs.columns if c not in RUN_COLUMNS and c not in KNOB_NAMES]
    runs = _hashable(runs, static)
    learners = _done(store.joined("learners"), static)
    market = _done(store.joined("market"), static)
    metric = primary_metric(learners, preferred) if len(learners) else None
    return Results(store.path, manifest, runs, learners, metric, static, market)


def final_summary(results_dir: Results | str | Path) -> pd.DataFrame:
    """Final primary metric per condition × learner, across seeds, done runs only.

    Columns: the static values (one per ``static_grid`` key), ``p``, ``kappa``, every other knob
    that varies in the sweep, ``learner``, ``is_prober``, then ``mean``, ``sem`` (standard error,
    ddof 1; NaN with one seed), ``n`` (seeds) and ``metric`` (the metric's column name).
    Empty (with those columns) when no run finished.
    """
    res = load_results(results_dir)
    keys = [*res.conditions, "learner", "is_prober"]
    columns = [*keys, "mean", "sem", "n", "metric"]
    if res.metric is None:
        return pd.DataFrame(columns=columns)
    stats = seed_stats(final_rows(res.learners), keys, res.metric)
    stats["metric"] = res.metric
    return stats[columns]
