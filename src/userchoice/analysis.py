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

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from userchoice.knobs import KNOB_NAMES, SCALAR_KNOBS
from userchoice.metrics import METRICS
from userchoice.registry import Registry, RegistryError
from userchoice.stats import STAT_COLUMNS, seed_stats

# Columns of the runs table that are bookkeeping, not conditions.
RUN_COLUMNS = ("run_id", "group", "seed", "chunk", "seconds", "status", "reason",
               "diverged_step", "phases", "rounds", "equilibria")
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
    # Population dynamics' further tables (groups, allocations, phases), joined likewise.
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def dynamics(self) -> str:
        return str((self.manifest.get("config") or {}).get("dynamics") or "msgd")

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

    def to_dataframe(self, kind: str = "all") -> pd.DataFrame:
        """The ``done`` runs as one tidy frame (``ResultsDir.to_dataframe``, done only)."""
        from userchoice.experiments.store import ResultsDir  # lazily, as in load_results

        return ResultsDir(self.path).to_dataframe(kind, done_only=True)

    def to_xarray(self) -> Any:
        """The ``done`` runs as an ``xarray.Dataset`` (``ResultsDir.to_xarray``, done only)."""
        from userchoice.experiments.store import ResultsDir

        return ResultsDir(self.path).to_xarray(done_only=True)


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
    population = (manifest.get("config") or {}).get("dynamics") == "population"
    if population and preferred is None:  # a learner's risk on its users, not its share
        preferred = "learner_risk"
    metric = primary_metric(learners, preferred) if len(learners) else None
    extra = {}
    if population:
        from userchoice.experiments.store import EXTRA_TABLES

        extra = {name: _done(store.joined(name), static) for name in EXTRA_TABLES}
    return Results(store.path, manifest, runs, learners, metric, static, market, extra)


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


# ---------------------------------------------------------------------------------------------
# Numbers as a paper prints them
# ---------------------------------------------------------------------------------------------

# The bands and error bars figures and tables offer: name → what a caption calls it.
BANDS = {"se": "mean ± standard error", "ci95": "mean with its 95% confidence interval"}


def band_halfwidth(sem: Any, n: Any, band: str = "se") -> np.ndarray:
    """Half-width of the ``band`` around a mean of ``n`` values with standard error ``sem``:
    the s.e. itself (``se``) or the half-width of the 95% t interval (``ci95``: t quantile
    with n − 1 degrees of freedom × s.e., so few seeds give honestly wide bands). NaN where it
    is undefined (one value)."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {list(BANDS)}, got {band!r}")
    sem = np.asarray(sem, float)
    if band == "se":
        return sem
    from scipy.stats import t

    n = np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        return np.where(n > 1, t.ppf(0.975, np.maximum(n - 1, 1)) * sem, np.nan)


def finite_number(value: Any) -> float | None:
    """A finite float, else None (unparseable, NaN or infinite; JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_number(value: Any, digits: int = 4) -> str:
    """A number without an uncertainty: ``digits`` significant digits; '–' when missing."""
    number = finite_number(value)
    if number is None:
        return "–" if value is None or isinstance(value, float | np.floating) else str(value)
    return f"{number:.{digits}g}"


def round_to_se(mean: Any, sem: Any) -> tuple[str, str | None]:
    """``mean`` and ``sem`` as text, rounded to the precision the standard error supports: the
    s.e. to one significant digit (two when its first digit is 1, where one digit would be
    off by up to 50%), the mean to the same decimal place. ``(0.7512, 0.0034)`` →
    ``("0.751", "0.003")``; ``(1234.5, 56)`` → ``("1230", "60")``. Without a usable s.e.
    (missing, NaN, 0): the mean to 4 significant digits and None."""
    m, s = finite_number(mean), finite_number(sem)
    if m is None:
        return "–", None
    if s is None or s <= 0:
        return format_number(m), None

    def places(se: float) -> int:
        exponent = math.floor(math.log10(se))
        significant = 2 if se / 10.0**exponent < 2 else 1
        return significant - 1 - exponent

    decimals = places(s)
    decimals = places(round(s, decimals))  # 0.0096 → 0.010: rounding moved the first digit
    if decimals > 0:
        return f"{m:.{decimals}f}", f"{s:.{decimals}f}"
    return f"{round(m, decimals):.0f}", f"{round(s, decimals):.0f}"


def format_mean_se(mean: Any, sem: Any) -> str:
    """``mean ± s.e.`` rounded by :func:`round_to_se` (``0.751 ± 0.003``); the mean alone when
    there is no s.e.; '–' when there is no mean."""
    m, s = round_to_se(mean, sem)
    return m if s is None else f"{m} ± {s}"


# ---------------------------------------------------------------------------------------------
# Titles and captions from the config
# ---------------------------------------------------------------------------------------------

# What the shipped configs' name suffixes (``census_good_kappa``) vary, for titles.
_VARIANTS = {"kappa": "noisy probing (κ)", "2probe": "two probers", "nprobe": "N_probe ablation",
             "leader": "market-leader preferences", "majority": "majority-good preferences"}


def experiment_title(config: Mapping[str, Any]) -> str:
    """A short, readable experiment name for figure titles and headings: the config's
    ``title`` when it has one; else the description's first clause without its parentheses
    (the dataset), the market (``'good' market`` → good market) and the variant the name's
    suffix stands for (``census_good_kappa`` → noisy probing (κ)); else the name."""
    if config.get("title"):
        return str(config["title"])
    name = str(config.get("name") or "")
    description = str(config.get("description") or "").strip()
    if not description:
        return name or "experiment"
    clauses = [c.strip() for c in description.split(";")]
    head = re.sub(r"\s*\([^()]*\)", "", clauses[0]).strip().rstrip(".") or name
    parts = [head[:80]]
    market = re.search(r"'(\w+)' market", description)
    if market:
        parts.append(f"{market.group(1)} market")
    suffix = re.fullmatch(r".*_(?:good|bad)_(\w+)", name)
    if suffix and suffix.group(1) in _VARIANTS:
        parts.append(_VARIANTS[suffix.group(1)])
    elif name.endswith("_nprobe"):
        parts.append(_VARIANTS["nprobe"])
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Claims of the paper, checked against the results
# ---------------------------------------------------------------------------------------------

# A difference counts as real when it exceeds Z standard errors (about 95%).
Z = 2.0
ANSWERS = ("yes", "no", "unclear", "not tested")


@dataclass(frozen=True)
class Verdict:
    """The answer to one machine-checkable claim: ``yes`` / ``no`` (the results settle it,
    standard errors taken into account), ``unclear`` (within the noise) or ``not tested``
    (the results lack what the claim needs, e.g. p = 0.2 is not in the grid)."""

    claim: str
    answer: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.claim}: {self.answer}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class ClaimData:
    """What a claim check reads: each done run's final rows (one per run × learner, with its
    conditions), the primary metric and its direction, the pooled baseline and the static
    columns (held at their largest value unless the claim varies them)."""

    final: pd.DataFrame
    metric: str
    higher: bool
    pooled: float | None = None
    static: Sequence[str] = ()
    # The whole results (curves, the market table, population tables) for checks that need
    # more than the final rows; None when built from final rows alone.
    results: Results | None = None

    @classmethod
    def from_results(cls, res: Results) -> ClaimData:
        if res.metric is None:
            raise ValueError(f"{res.path} has no finished runs to check claims on")
        return cls(final_rows(res.learners), res.metric, res.higher_is_better, res.baseline,
                   tuple(res.static_columns), res)

    def better(self, a: float, b: float) -> float:
        """How much better ``a`` is than ``b`` in the metric's direction."""
        return (a - b) if self.higher else (b - a)

    @property
    def probers(self) -> list[int]:
        return probers(self.final)

    def held(self, vary: Sequence[str]) -> pd.DataFrame:
        """The rows with every condition not in ``vary`` at its reference value (static
        values at their largest, knobs at their smallest; p at its largest unless varied)."""
        where = reference_conditions(self.final, self.static)
        rows = at_conditions(self.final, where, skip=vary)
        if "p" not in vary and "p" in rows and len(rows):
            rows = rows[rows["p"] == rows["p"].max()]
        return rows

    def curve(self, learner: int, along: str, rows: pd.DataFrame | None = None
              ) -> dict[Any, dict[str, float]]:
        """``along`` value → seed statistics of ``learner``'s final metric."""
        rows = self.held([along]) if rows is None else rows
        return stats_lookup(rows[rows["learner"] == learner], [along], self.metric)

    def gain(self, a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, float]:
        """(how much better a is than b, its standard error)."""
        return self.better(a["mean"], b["mean"]), math.hypot(a["sem"], b["sem"])


CLAIM_CHECKS: Registry[Callable[..., Verdict]] = Registry("claim check")


def _column(name: str) -> str:
    """A config-style name (``probing.n_probe``) → its results column (``probing_n_probe``)."""
    return name.replace(".", "_")


def _label(column: str) -> str:
    return {"probing_n_probe": "N_probe", "kappa": "κ"}.get(column, column)


def _combine(claim: str, parts: Sequence[tuple[str, str]]) -> Verdict:
    """Per-learner answers → one: no if any is no, yes if all are yes, else unclear."""
    answers = {a for a, _ in parts}
    answer = "no" if "no" in answers else "yes" if answers == {"yes"} else "unclear"
    return Verdict(claim, answer, "; ".join(d for _, d in parts))


def _judge(value: float, se: float, threshold: float = 0.0) -> str:
    """yes if value exceeds threshold by Z s.e., no if it falls short by Z s.e., else unclear
    (and unclear without a standard error: one seed)."""
    if not math.isfinite(se):
        return "unclear"
    return "yes" if value - Z * se > threshold else "no" if value + Z * se < threshold \
        else "unclear"


def _fmt(value: Any) -> str:
    return f"{float(value):g}" if isinstance(value, int | float | np.number) else str(value)


def _stat_text(stat: Mapping[str, float]) -> str:
    return format_mean_se(stat["mean"], stat["sem"])


def _needs_a_curve(data: ClaimData, column: str, claim: str) -> Verdict | None:
    """"not tested" unless there are probers and two or more values of ``column``."""
    if column not in data.final or data.final[column].nunique() < 2 or not data.probers:
        return Verdict(claim, "not tested",
                       f"needs probers and two or more values of {_label(column)}")
    return None


@CLAIM_CHECKS.register("monotone")
def check_monotone(data: ClaimData, along: str = "p") -> Verdict:
    """Each prober's final metric improves along ``along`` (p, or a static value such as
    ``probing.n_probe``): no step between neighbouring values is worse by more than Z s.e.,
    and the last value is better than the first by more than Z s.e."""
    column = _column(along)
    claim = f"monotone in {_label(column)}"
    untested = _needs_a_curve(data, column, claim)
    if untested is not None:
        return untested
    parts = []
    for learner in data.probers:
        curve = data.curve(learner, column)
        values = sorted(curve)
        steps = [data.gain(curve[b], curve[a]) for a, b in itertools.pairwise(values)]
        reversal = any(_judge(d, se) == "no" for d, se in steps)
        overall = _judge(*data.gain(curve[values[-1]], curve[values[0]]))
        answer = "no" if reversal else overall
        path = " → ".join(_stat_text(curve[v]) for v in values)
        why = f"a step back beyond {Z:g} s.e." if reversal else \
            f"no gain beyond {Z:g} s.e." if overall != "yes" else \
            f"a gain beyond {Z:g} s.e., no step back beyond {Z:g} s.e."
        parts.append((answer, f"learner {learner}: {path}; {why}"))
    return _combine(claim, parts)


@CLAIM_CHECKS.register("visible_at")
def check_visible_at(data: ClaimData, p: float) -> Verdict:
    """At probing weight ``p`` each prober is already better than at the smallest p, by more
    than Z s.e."""
    claim = f"visible at p = {_fmt(p)}"
    ps = p_values(data.final)
    match = [v for v in ps if math.isclose(v, float(p), rel_tol=1e-9, abs_tol=1e-12)]
    if not data.probers or not match or match[0] == ps[0]:
        return Verdict(claim, "not tested", f"p = {_fmt(p)} is not in the p grid {ps}")
    parts = []
    for learner in data.probers:
        curve = data.curve(learner, "p")
        d, se = data.gain(curve[match[0]], curve[ps[0]])
        answer = "yes" if _judge(d, se) == "yes" else "no"
        parts.append((answer, f"learner {learner}: {format_mean_se(d, se)} better than at "
                              f"p = {_fmt(ps[0])}"))
    return _combine(claim, parts)


def _best_p(data: ClaimData, rows: pd.DataFrame) -> float:
    return best_p(rows, data.metric, data.higher)


def gap_closed_se(p0: Mapping[str, float], best: Mapping[str, float], pooled: float
                  ) -> tuple[float, float]:
    """:func:`gap_closed` with its standard error (delta method; the pooled baseline is one
    fit, without an s.e.)."""
    gap = gap_closed(p0["mean"], best["mean"], pooled)
    width = abs(pooled - p0["mean"])
    se = math.hypot(best["sem"], (1 - gap) * p0["sem"]) / width if width else math.nan
    return gap, se


@CLAIM_CHECKS.register("gap_closed")
def check_gap_closed(data: ClaimData, at_least: float) -> Verdict:
    """Each prober at the best p closes at least ``at_least`` of the gap between itself at the
    smallest p and the pooled baseline (yes when the fraction exceeds it by Z s.e., no when
    it falls short by Z s.e.)."""
    claim = f"gap closed ≥ {_fmt(at_least)}"
    rows = data.held(["p"])
    ps = p_values(rows)
    if data.pooled is None or len(ps) < 2 or not data.probers:
        return Verdict(claim, "not tested", "needs probers, a p grid and the pooled baseline")
    p_best = _best_p(data, rows)
    parts = []
    for learner in data.probers:
        curve = data.curve(learner, "p", rows)
        gap, se = gap_closed_se(curve[ps[0]], curve[p_best], data.pooled)
        parts.append((_judge(gap, se, float(at_least)),
                      f"learner {learner}: {format_mean_se(gap, se)} at p = {_fmt(p_best)}"))
    return _combine(claim, parts)


@CLAIM_CHECKS.register("others_flat")
def check_others_flat(data: ClaimData, max_fraction: float = 0.25) -> Verdict:
    """Learners that do not probe barely move: between the smallest and the best p, each
    changes (in absolute value, less Z s.e.) by at most ``max_fraction`` of the probers' mean
    gain."""
    claim = f"non-probers barely move (≤ {_fmt(max_fraction)} of the probers' gain)"
    rows = data.held(["p"])
    ps = p_values(rows)
    others = sorted(set(int(v) for v in rows["learner"].unique()) - set(data.probers))
    if len(ps) < 2 or not data.probers or not others:
        return Verdict(claim, "not tested", "needs probers, non-probers and a p grid")
    p_best = _best_p(data, rows)
    gains = [data.gain(data.curve(i, "p", rows)[p_best], data.curve(i, "p", rows)[ps[0]])[0]
             for i in data.probers]
    gain = float(np.mean(gains))
    if gain <= 0:
        return Verdict(claim, "unclear", f"the probers do not gain ({gain:.3g})")
    parts = []
    for learner in others:
        curve = data.curve(learner, "p", rows)
        d, se = data.gain(curve[p_best], curve[ps[0]])
        moved = abs(d) - (Z * se if math.isfinite(se) else 0.0)
        parts.append(("yes" if moved <= max_fraction * gain else "no",
                      f"learner {learner}: {format_mean_se(d, se)}"))
    verdict = _combine(claim, parts)
    return Verdict(claim, verdict.answer, f"probers' gain {gain:.3g}; {verdict.detail}")


@CLAIM_CHECKS.register("noise_keeps_gain")
def check_noise_keeps_gain(data: ClaimData, kappa: float) -> Verdict:
    """With κ noise the probers still gain (better at the best p than at the smallest p, by
    more than Z s.e.) and gain no more than without noise (not better by more than Z s.e.):
    noise attenuates the gain but keeps it. The best p is the one at κ = its smallest value
    (the largest p when probing does not help there)."""
    claim = f"κ = {_fmt(kappa)} attenuates but keeps the gain"
    if "kappa" not in data.final or not data.probers:
        return Verdict(claim, "not tested", "needs probers and a κ grid")
    rows = data.held(["p", "kappa"])
    kappas = sorted(float(v) for v in rows["kappa"].unique())
    match = [k for k in kappas if math.isclose(k, float(kappa), abs_tol=1e-12)]
    ps = p_values(rows)
    if not match or match[0] == kappas[0] or len(ps) < 2:
        return Verdict(claim, "not tested", f"needs κ = {_fmt(kappa)} beside κ = "
                                            f"{_fmt(kappas[0]) if kappas else '?'} and a p grid")
    clean = rows[rows["kappa"] == kappas[0]]
    p_top = _best_p(data, clean)
    p_top = p_top if p_top != ps[0] else ps[-1]
    parts = []
    for learner in data.probers:
        gains = {}
        for k in (kappas[0], match[0]):
            curve = data.curve(learner, "p", rows[rows["kappa"] == k])
            gains[k] = data.gain(curve[p_top], curve[ps[0]])
        (g0, s0), (gk, sk) = gains[kappas[0]], gains[match[0]]
        keeps = _judge(gk, sk) == "yes"
        larger = _judge(gk - g0, math.hypot(s0, sk)) == "yes"
        answer = "yes" if keeps and not larger else "no"
        parts.append((answer, f"learner {learner} at p = {_fmt(p_top)}: gain "
                              f"{format_mean_se(gk, sk)} at κ = {_fmt(match[0])} vs "
                              f"{format_mean_se(g0, s0)} at κ = {_fmt(kappas[0])}"))
    return _combine(claim, parts)


@CLAIM_CHECKS.register("trapped")
def check_trapped(data: ClaimData, min_gap: float | None = None,
                  min_relative: float | None = None) -> Verdict:
    """Without probing (the smallest p) the worst learner stays behind the pooled baseline by
    at least ``min_gap`` (metric units) or ``min_relative`` × the baseline's value (give one),
    judged with Z s.e."""
    if (min_gap is None) == (min_relative is None):
        raise ValueError("trapped takes exactly one of min_gap and min_relative")
    if data.pooled is None:
        return Verdict("trapped", "not tested", "no pooled baseline recorded")
    threshold = min_gap if min_gap is not None else min_relative * abs(data.pooled)
    side = "below" if data.higher else "above"
    claim = f"the worst learner stays ≥ {threshold:.3g} {side} the pooled baseline"
    rows = data.held(["p"])
    rows = rows[rows["p"] == rows["p"].min()]
    stats = stats_lookup(rows, ["learner"], data.metric)
    if not stats:
        return Verdict(claim, "not tested", "no final values")
    worst = min(stats, key=lambda i: data.better(stats[i]["mean"], data.pooled))
    stat = stats[worst]
    gap = data.better(data.pooled, stat["mean"])
    return Verdict(claim, _judge(gap, stat["sem"], threshold),
                   f"learner {worst}: {_stat_text(stat)} vs pooled {format_number(data.pooled)}")


@CLAIM_CHECKS.register("variance_falls")
def check_variance_falls(data: ClaimData, along: str = "probing.n_probe") -> Verdict:
    """The probers' spread across seeds (standard deviation of the final metric) is smaller at
    the largest value of ``along`` than at the smallest, by more than Z s.e. of the
    difference (s.e. of a standard deviation ≈ sd / √(2(n − 1)))."""
    column = _column(along)
    claim = f"variance falls with {_label(column)}"
    untested = _needs_a_curve(data, column, claim)
    if untested is not None:
        return untested
    parts = []
    for learner in data.probers:
        curve = data.curve(learner, column)
        low, high = (curve[v] for v in (min(curve), max(curve)))

        def se(stat: Mapping[str, float]) -> float:
            return stat["std"] / math.sqrt(2 * (stat["n"] - 1)) if stat["n"] > 1 else math.nan

        d = low["std"] - high["std"]
        parts.append((_judge(d, math.hypot(se(low), se(high))),
                      f"learner {learner}: sd {low['std']:.3g} at {_fmt(min(curve))} → "
                      f"{high['std']:.3g} at {_fmt(max(curve))}"))
    return _combine(claim, parts)


# Shape claims over the whole curves (Su & Dean's streaming protocol, NEIGHBOURS.md §A): a
# market metric as recorded, a learner metric as its mean over the learners of each run.


def run_curves(data: ClaimData, metric: str) -> pd.DataFrame | None:
    """One row per (run, step) with ``metric`` (learner metrics: the mean over the run's
    learners) and the run's conditions; None when the results do not record it."""
    res = data.results
    if res is None or metric not in METRICS:
        return None
    market = METRICS.get(metric).kind == "market"
    frame = res.market if market else res.learners
    if frame is None or not has_values(frame, metric):
        return None
    keys = ["run_id", "step", *(c for c in (*res.static_columns, *CONDITION_KNOBS, "seed")
                                 if c in frame)]
    if market:
        return frame[[*keys, metric]]
    return frame.groupby(keys, sort=True, dropna=False)[metric].mean().reset_index()


def _by_condition(data: ClaimData, runs: pd.DataFrame, metric: str
                  ) -> Iterable[tuple[str, pd.DataFrame]]:
    """(condition text, seed statistics of ``metric`` by step) per varying condition."""
    by = varying(runs, [*data.static, *CONDITION_KNOBS])
    stats = seed_stats(runs, [*by, "step"], metric)
    if not by:
        yield "", stats.sort_values("step")
        return
    for values, part in stats.groupby(by, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        text = ", ".join(f"{_label(c)} = {_fmt(v)}" for c, v in zip(by, values, strict=True))
        yield text, part.sort_values("step")


@CLAIM_CHECKS.register("decreasing")
def check_decreasing(data: ClaimData, metric: str = "potential", tolerance: float = 0.05,
                     max_rises: float = 0.1) -> Verdict:
    """Under every condition, the mean curve of ``metric`` over seeds falls from the first
    evaluation to the last by more than Z s.e., rising between neighbouring evaluations by
    more than ``tolerance`` × the total fall at no more than a fraction ``max_rises`` of them
    (noise allowed: "almost monotonically")."""
    claim = f"{metric} decreases"
    runs = run_curves(data, metric)
    if runs is None:
        return Verdict(claim, "not tested", f"the results record no {metric}")
    parts = []
    for where, curve in _by_condition(data, runs, metric):
        mean = curve["mean"].to_numpy(float)
        if len(mean) < 2:
            parts.append(("unclear", f"{where}: one evaluation point"))
            continue
        first, last = curve.iloc[0], curve.iloc[-1]
        fall = float(first["mean"] - last["mean"])
        rises = float(np.mean(np.diff(mean) > tolerance * abs(fall)))
        answer = _judge(fall, math.hypot(first["sem"], last["sem"]))
        answer = "no" if rises > max_rises else answer
        parts.append((answer, f"{where + ': ' if where else ''}{format_number(first['mean'])} → "
                              f"{format_number(last['mean'])}, rising at {rises:.0%} of the "
                              f"steps between evaluations"))
    return _combine(claim, parts)


@CLAIM_CHECKS.register("ordered_by")
def check_ordered_by(data: ClaimData, along: str, metric: str = "potential",
                     increasing: bool = True) -> Verdict:
    """The final value of ``metric`` (mean over seeds; other conditions at their reference
    values) rises with ``along`` (falls with ``increasing: false``): no neighbouring pair in
    the wrong order by more than Z s.e., and the last value beyond the first by more than
    Z s.e."""
    column = _column(along)
    claim = f"final {metric} {'rises' if increasing else 'falls'} with {_label(column)}"
    runs = run_curves(data, metric)
    if runs is None or column not in runs or runs[column].nunique() < 2:
        return Verdict(claim, "not tested",
                       f"needs {metric} and two or more values of {_label(column)}")
    final = final_rows(runs)
    final = at_conditions(final, reference_conditions(final, data.static), skip=[column])
    curve = stats_lookup(final, [column], metric)
    values = sorted(curve)
    sign = 1.0 if increasing else -1.0

    def gain(a: Any, b: Any) -> tuple[float, float]:
        return (sign * (curve[b]["mean"] - curve[a]["mean"]),
                math.hypot(curve[a]["sem"], curve[b]["sem"]))

    reversal = any(_judge(*gain(a, b)) == "no" for a, b in itertools.pairwise(values))
    answer = "no" if reversal else _judge(*gain(values[0], values[-1]))
    path = " → ".join(f"{_fmt(v)}: {_stat_text(curve[v])}" for v in values)
    return Verdict(claim, answer, path)


@CLAIM_CHECKS.register("concave_in_log_t")
def check_concave_in_log_t(data: ClaimData, metric: str = "path_length", segments: int = 2,
                           tolerance: float = 0.1) -> Verdict:
    """Under every condition, the mean curve of ``metric`` over seeds is concave in log t:
    cut [log t₁, log T] (t₁ the first evaluation after step 0) into ``segments`` equal parts,
    and each part's slope d metric / d log t is at most (1 + ``tolerance``) × the previous
    one's (``path_length`` growing like log t or slower). A shape test of the mean curves,
    without standard errors. The default, two halves of log t, judges the shape and not the
    bumps of one arrival order (with ``arrival: stream`` every seed sees the same users in the
    same order, so seeds do not average those out)."""
    claim = f"{metric} concave in log t"
    if not isinstance(segments, int) or segments < 2:
        raise ValueError(f"segments must be an integer ≥ 2, got {segments!r}")
    runs = run_curves(data, metric)
    if runs is None:
        return Verdict(claim, "not tested", f"the results record no {metric}")
    parts = []
    for where, curve in _by_condition(data, runs, metric):
        curve = curve[curve["step"] > 0]
        if len(curve) < segments + 1:
            parts.append(("unclear", f"{where}: {len(curve)} evaluations after step 0 (need "
                                     f"{segments + 1})"))
            continue
        log_t = np.log(curve["step"].to_numpy(float))
        cuts = np.linspace(log_t[0], log_t[-1], segments + 1)
        slopes = np.diff(np.interp(cuts, log_t, curve["mean"].to_numpy(float))) / np.diff(cuts)
        bent = all(later <= earlier + tolerance * abs(earlier)
                   for earlier, later in itertools.pairwise(slopes))
        parts.append(("yes" if bent else "no",
                      f"{where + ': ' if where else ''}slopes per log t "
                      f"{', '.join(f'{s:.3g}' for s in slopes)}"))
    return _combine(claim, parts)


def validate_checks(checks: Any, where: str = "reported.checks") -> list[dict[str, Any]]:
    """The ``reported.checks`` entries of a config as ``{kind, **parameters}`` mappings, each
    naming a registered claim check with parameters it takes; errors name the entry."""
    import inspect

    if checks is None:
        return []
    if not isinstance(checks, list):
        raise ValueError(f"{where} must be a list of {{kind: ..., ...}} entries")
    out = []
    for index, entry in enumerate(checks):
        at = f"{where}[{index}]"
        if not isinstance(entry, Mapping) or "kind" not in entry:
            raise ValueError(f"{at} must be a mapping with a kind (one of "
                             f"{list(CLAIM_CHECKS.names())}), got {entry!r}")
        try:
            check = CLAIM_CHECKS.get(str(entry["kind"]))
        except RegistryError as error:
            raise ValueError(f"{at}: {error}") from None
        params = {k: v for k, v in entry.items() if k != "kind"}
        try:
            inspect.signature(check).bind(None, **params)
        except TypeError as error:
            raise ValueError(f"{at} ({entry['kind']}): {error}") from None
        out.append(dict(entry))
    return out


def check_claims(data: ClaimData | Results | str | Path, checks: Any) -> list[Verdict]:
    """Run each ``reported.checks`` entry (see :func:`validate_checks`) on the results."""
    entries = validate_checks(checks)
    if not isinstance(data, ClaimData):
        data = ClaimData.from_results(load_results(data))
    verdicts = []
    for entry in entries:
        params = {k: v for k, v in entry.items() if k != "kind"}
        try:
            verdicts.append(CLAIM_CHECKS.get(entry["kind"])(data, **params))
        except (KeyError, ValueError) as error:  # e.g. a learner without a value at some p
            verdicts.append(Verdict(entry["kind"], "not tested",
                                    f"{type(error).__name__}: {error}"))
    return verdicts


def reported_points(reported: Mapping[str, Any] | None, key: str) -> dict[float, float]:
    """A ``reported:`` mapping such as ``prober`` (p → value) or ``by_n_probe`` as floats →
    floats (YAML and JSON may have made the keys strings); entries that are not numbers are
    left out."""
    mapping = (reported or {}).get(key)
    if not isinstance(mapping, Mapping):
        return {}
    out = {}
    for k, v in mapping.items():
        k, v = finite_number(k), finite_number(v)
        if k is not None and v is not None:
            out[k] = v
    return dict(sorted(out.items()))


# Population dynamics' claim checks register themselves in CLAIM_CHECKS (a module of their own).
from userchoice import analysis_population as _analysis_population  # noqa: E402, F401
