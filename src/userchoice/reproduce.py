"""Reproduce the paper's experiments: shipped configs → results → figures → ``summary.md``.

Config sets (one YAML per experiment of SPEC §7, same names in each set), shipped inside the
package as ``userchoice/configs/<set>/<name>.yaml`` (``--configs DIR`` replaces them):

- ``paper``: the paper's settings on the paper's data in the data directory;
- ``local``: the same settings on real substitutes: the ACS sample shipped in the package,
  MovieLens 100K and an Amazon review sample from the data directory;
- ``quick``: CI-sized variants on the substitutes (few seeds, short horizon).

Paths in configs (``${DATA_DIR}``, ``${SAMPLE_DATA}``, ``${CONFIG_DIR}``, relative to the
config file) are resolved by ``userchoice.experiments.paths.load_experiment``, which this module
uses to read the shipped configs.

Targets: ``paper`` (every config of a set), one per dataset registered by name
(``userchoice.data.registry``: the configs named ``<dataset>_…``, without the neural-network
ones) and ``nn`` (the configs named ``<dataset>_nn_…``).

``reported:`` (the paper's numbers, SPEC §9) is free-form for the config schema; this module
reads these keys: ``metric`` (a learner metric of the metric table), ``pooled`` (pooled
baseline), ``worst_p0`` (the most trapped learner without probing), ``prober`` (a mapping
p → the prober's final metric, κ = 0), ``prober_best`` (the prober at its best p),
``by_n_probe`` (N_probe → the prober's final metric), ``claims`` (the paper's sentences),
``checks`` (machine-checkable claims: ``{kind: <a name of analysis.CLAIM_CHECKS>, ...}``, e.g.
``{kind: monotone, along: p}``, ``{kind: visible_at, p: 0.2}``, ``{kind: gap_closed,
at_least: 0.8}``; each gets a verdict in ``summary.md`` and the report) and ``source``.
``summary.md`` sets our numbers beside the paper's, the fraction of the gap closed (ours and
the paper's: ``analysis.gap_closed``) and the verdicts.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from userchoice.atomic import atomic_write
from userchoice.data.registry import DATASETS
from userchoice.experiments.config import ExperimentConfig
from userchoice.experiments.paths import CONFIG_SETS, load_experiment
from userchoice.experiments.paths import CONFIGS_ENV as CONFIGS_ENV  # re-exported
from userchoice.experiments.paths import configs_root as _configs_root

# SPEC §7's table order, used for the summary (other names follow, alphabetically).
EXPERIMENT_ORDER = (
    "census_bad", "census_bad_leader", "census_bad_majority", "census_good",
    "census_good_2probe", "census_good_kappa", "census_good_leader", "census_good_majority",
    "census_nprobe", "movielens_bad", "movielens_bad_leader", "movielens_bad_majority",
    "movielens_good", "movielens_good_kappa", "movielens_good_leader", "movielens_good_majority",
    "amazon_bad", "amazon_good", "amazon_good_kappa", "census_nn_bad", "census_nn_good",
)


# ---------------------------------------------------------------------------------------------
# Where the shipped configs are
# ---------------------------------------------------------------------------------------------


def configs_root(explicit: str | Path | None = None) -> Path:
    """The folder holding the config sets (``paper/``, ``local/``, ``quick/``): ``explicit``
    (``--configs DIR``), else ``$USERCHOICE_CONFIGS``, else the configs shipped inside the
    package (``experiments.paths.configs_root``)."""
    return _configs_root(explicit)


# The neighbouring models of this research line (../shared/NEIGHBOURS.md): configs named
# ``su_dean_…`` (Su & Dean's streaming protocol), ``dean_…`` (Dean et al.'s participation
# dynamics) and ``jagadeesan_…`` (competition for market share) form the target
# ``neighbours``, not ``paper`` (the founding paper's experiments).
NEIGHBOUR_PREFIXES = ("su_dean_", "dean_", "jagadeesan_")


def is_neighbour(name: str) -> bool:
    return name.startswith(NEIGHBOUR_PREFIXES)


def targets() -> tuple[str, ...]:
    """``paper``, each dataset registered by name (``userchoice.data.registry``), ``nn`` and
    ``neighbours``."""
    reserved = ("paper", "nn", "neighbours")
    return ("paper", *(n for n in DATASETS.named() if n not in reserved), "nn", "neighbours")


def _dataset_of(name: str) -> str | None:
    """The registered dataset a config name starts with (``<dataset>_…``; the longest match)."""
    matches = [d for d in DATASETS.named() if name.startswith(f"{d}_")]
    return max(matches, key=len) if matches else None


def _in_target(name: str, target: str) -> bool:
    if target == "neighbours" or is_neighbour(name):
        return target == "neighbours" and is_neighbour(name)
    if target == "paper":
        return True
    dataset = _dataset_of(name)
    nn = dataset is not None and name[len(dataset) + 1:].startswith("nn_")
    if target == "nn":
        return nn
    return dataset == target and not nn


def select_configs(target: str, kind: str = "paper", root: str | Path | None = None,
                   only: Sequence[str] | None = None) -> list[Path]:
    """The config files of ``target`` (``paper``, a registered dataset's name, or ``nn``; see
    ``targets()``) in set ``kind`` (paper | local | quick), sorted by name; ``only`` keeps those
    names."""
    known = targets()
    if target not in known:
        close = difflib.get_close_matches(target, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"target must be one of {list(known)}, got {target!r}{hint}")
    if kind not in CONFIG_SETS:
        raise ValueError(f"config set must be one of {list(CONFIG_SETS)}, got {kind!r}")
    folder = configs_root(root) / kind
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder.parent} has no {kind}/ folder of experiment configs "
                                f"(pass --configs DIR holding {kind}/)")
    paths = sorted(p for p in folder.glob("*.yaml") if _in_target(p.stem, target))
    if only:
        unknown = sorted(set(only) - {p.stem for p in paths})
        if unknown:
            raise ValueError(f"{unknown} not among the {target} configs in {folder}: "
                             f"{[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in set(only)]
    if not paths:
        raise FileNotFoundError(f"no {target} configs in {folder}")
    return paths


def bad_good_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """(bad, good) experiment pairs: ``X_bad[_S]`` with ``X_good[_S]``."""
    present = set(names)
    pairs = []
    for name in names:
        match = re.fullmatch(r"(.*)_bad(_.*)?", name)
        if match:
            good = f"{match.group(1)}_good{match.group(2) or ''}"
            if good in present:
                pairs.append((name, good))
    return pairs


# ---------------------------------------------------------------------------------------------
# Figures (userchoice.plots)
# ---------------------------------------------------------------------------------------------


def _plots() -> Any:
    try:
        from userchoice import plots
    except ImportError as error:
        raise RuntimeError(f"figures need userchoice.plots, which failed to import ({error}); "
                           f"pass figures=False to skip them") from error
    missing = [f for f in ("plot_results", "plot_bad_vs_good") if not hasattr(plots, f)]
    if missing:
        raise RuntimeError(f"userchoice.plots lacks {missing}; pass figures=False to skip "
                           f"figures")
    return plots


def _paths(written: Any) -> list[Path]:
    if written is None:
        return []
    if isinstance(written, str | Path):
        return [Path(written)]
    return [Path(p) for p in written]


# Figure tasks: (key, experiment) or (key, (bad, good)). With enough of them they are drawn
# by worker processes, one per core (matplotlib holds the GIL while it draws, and drawing two
# formats per figure took ≈ 12 % of a paper run). Workers are fresh interpreters given their
# tasks on stdin, one JSON line each after a header line (not multiprocessing: spawning would
# re-run a caller's unguarded script); a set a worker could not draw (say, with a metric
# registered only in this process) is drawn again here.
MIN_FIGURE_TASKS_PER_WORKER = 3
_WORKER = "from userchoice.reproduce import _figure_worker; _figure_worker()"
# A background worker's niceness: the lowest CPU priority, so it draws on the cores the sweeps
# leave idle (compiling, loading data, fitting) and takes ≈ 1.5 % of a core from a running one.
BACKGROUND_NICE = 19


def _draw(out: Path, key: str, task: str | Sequence[str]) -> list[Path]:
    plots = _plots()
    if isinstance(task, str):
        return _paths(plots.plot_results(out / task, overview=False))
    bad, good = task
    return _paths(plots.plot_bad_vs_good(out / bad, out / good, out / "figures" / key))


def _figure_worker() -> None:
    """(A worker process) read a header line ``{"out", "nice"}``, then draw each task line as
    it arrives and answer each with a line ``{"key", "paths"}`` (paths null where it could not
    draw the set: the caller draws it again, and reports), until stdin closes."""
    header = json.loads(sys.stdin.readline())
    if header.get("nice") and hasattr(os, "nice"):
        os.nice(int(header["nice"]))
    for line in sys.stdin:
        key, task = json.loads(line)
        try:
            paths: list[str] | None = [str(p) for p in _draw(Path(header["out"]), key, task)]
        except Exception:
            paths = None
        print(json.dumps({"key": key, "paths": paths}), flush=True)


class FigureWorkers:
    """Worker processes that draw figure tasks one at a time: a worker is handed the next task
    when it answers the last (one reader thread per worker), so the tasks not yet handed out
    wait here, and ``collect(wait=False)`` can leave them to others (background workers run at
    low priority: on a busy machine their queue would crawl). What cannot start or dies leaves
    its tasks undrawn, for the caller to draw."""

    def __init__(self, out: Path, n: int, nice: int = 0) -> None:
        self.cond = threading.Condition()
        self.queue: list[tuple[str, Any]] = []
        self.idle: list[subprocess.Popen] = []
        self.live: set[subprocess.Popen] = set()
        self.drawn: dict[str, list[Path]] = {}
        self.procs: list[subprocess.Popen] = []
        self.readers: list[threading.Thread] = []
        try:
            for _ in range(n):
                proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True)
                self.procs.append(proc)
                if not self._send(proc, {"out": str(out), "nice": nice}):
                    continue
                self.live.add(proc)
                self.idle.append(proc)
                reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
                reader.start()
                self.readers.append(reader)
        except OSError:  # no (more) worker processes here
            pass

    @staticmethod
    def _send(proc: subprocess.Popen, payload: Any) -> bool:
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(payload) + "\n")
            proc.stdin.flush()
            return True
        except (OSError, ValueError):  # it died
            return False

    def _dispatch(self) -> None:  # holding self.cond
        while self.queue and self.idle:
            proc = self.idle.pop()
            if proc in self.live and self._send(proc, list(self.queue[0])):
                self.queue.pop(0)

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                answer = json.loads(line)
                key, paths = answer["key"], answer["paths"]
            except (ValueError, KeyError, TypeError):  # something else it printed
                continue
            with self.cond:
                if paths is not None:
                    self.drawn[key] = [Path(p) for p in paths]
                self.idle.append(proc)
                self._dispatch()
                self.cond.notify_all()
        with self.cond:  # its output ended: it exited or died
            self.live.discard(proc)
            self.cond.notify_all()

    def submit(self, key: str, task: Any) -> None:
        with self.cond:
            self.queue.append((key, task))
            self._dispatch()

    def collect(self, wait: bool = True) -> dict[str, list[Path]]:
        """What the workers drew: every task submitted (``wait``), or only those already
        handed out (the queued ones are dropped, left undrawn)."""
        with self.cond:
            if not wait:
                self.queue.clear()
            while self.live and (self.queue or any(p not in self.idle for p in self.live)):
                self.cond.wait()
        self.stop()
        with self.cond:
            return dict(self.drawn)

    def stop(self) -> None:
        """End every worker (those drawing a task are killed)."""
        for proc in self.procs:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)


def figure_tasks(names: Sequence[str]) -> list[tuple[str, Any]]:
    """Every figure set of ``names``: each experiment's, then each bad/good pair's."""
    tasks: list[tuple[str, Any]] = [(name, name) for name in names]
    return tasks + [(f"{bad}_vs_{good}", [bad, good]) for bad, good in bad_good_pairs(names)]


def figure_workers(n_tasks: int, workers: int | None = None) -> int:
    """Worker processes for ``n_tasks`` figure sets: one per core (or ``workers``), none for
    fewer than ``MIN_FIGURE_TASKS_PER_WORKER`` sets each (then drawn in this process)."""
    from userchoice.engine.driver import cpu_cores

    n = min(cpu_cores() if workers is None else workers, n_tasks // MIN_FIGURE_TASKS_PER_WORKER)
    return n if n > 1 else 0


class BackgroundFigures:
    """Figures drawn while the sweeps still run: an experiment's set is submitted when its
    sweep ends, a bad/good pair's when both have, to workers at the lowest CPU priority
    (``BACKGROUND_NICE``) that draw on the cores a sweep leaves idle. ``write_figures`` then
    takes what they drew and draws the rest."""

    def __init__(self, out: Path, names: Sequence[str], workers: int | None = None) -> None:
        self.tasks = figure_tasks(names)
        n = figure_workers(len(self.tasks), workers)
        self.workers = FigureWorkers(out, n, BACKGROUND_NICE) if n else None
        self.finished: set[str] = set()
        self.submitted: list[str] = []

    def experiment_done(self, name: str) -> None:
        self.finished.add(name)
        for key, task in self.tasks:
            needs = {task} if isinstance(task, str) else set(task)
            if key not in self.submitted and needs <= self.finished:
                self.submitted.append(key)
                if self.workers is not None:
                    self.workers.submit(key, task)

    def collect(self) -> dict[str, list[Path]]:
        """What they drew: the sets handed out so far; those still queued are left to
        ``write_figures``'s workers, at normal priority."""
        return {} if self.workers is None else self.workers.collect(wait=False)

    def stop(self) -> None:
        """Kill the workers (reproduce was interrupted: no figures wanted)."""
        if self.workers is not None:
            self.workers.stop()


def write_figures(out: Path, names: Sequence[str], workers: int | None = None,
                  drawn: dict[str, list[Path]] | None = None
                  ) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Every figure of each experiment and of each bad/good pair; (paths, errors) by name.

    ``workers``: processes drawing them (default: one per core; none for fewer than
    ``MIN_FIGURE_TASKS_PER_WORKER`` figure sets each). ``drawn``: sets already drawn (by
    ``BackgroundFigures``), not drawn again.
    """
    _plots()
    tasks = figure_tasks(names)
    drawn = dict(drawn or {})
    left = [(key, task) for key, task in tasks if key not in drawn]
    n = figure_workers(len(left), workers)
    if n:
        workers_ = FigureWorkers(Path(out), n)
        for key, task in left:
            workers_.submit(key, task)
        drawn.update(workers_.collect())
    written: dict[str, list[Path]] = {}
    errors: dict[str, str] = {}
    for key, task in tasks:
        if key in drawn:
            written[key] = drawn[key]
            continue
        try:
            written[key] = _draw(out, key, task)
        except Exception as error:  # one experiment's figures never stop the others
            errors[key] = f"{type(error).__name__}: {error}"
    return written, errors


# ---------------------------------------------------------------------------------------------
# Summary: our final numbers beside the paper's
# ---------------------------------------------------------------------------------------------


def _fmt_stat(stat: dict[str, float] | None) -> str:
    """An ``analysis.stats_lookup`` entry as ``mean ± s.e.``, rounded to the precision the
    s.e. supports (``analysis.format_mean_se``); '—' when missing."""
    from userchoice.analysis import format_mean_se

    if stat is None or not stat["n"]:
        return "—"
    return format_mean_se(stat["mean"], stat["sem"])


def _fmt_gap(value: float | None, se: float | None = None) -> str:
    """A fraction of the gap closed (2 decimals, or as its s.e. supports)."""
    from userchoice.analysis import format_mean_se

    if value is None or math.isnan(value):
        return "—"
    if se is None or not math.isfinite(se):
        return f"{value:.2f}"
    return format_mean_se(value, se)


def paper_gap_closed(reported: Mapping[str, Any], higher: bool) -> float | None:
    """The fraction of the gap the paper reports closed: its prober without probing (the
    ``prober`` entry at the smallest p, else ``worst_p0``) → its best reported prober value
    (``prober_best``, else the best ``prober`` entry) against its pooled baseline."""
    from userchoice.analysis import gap_closed, reported_points

    curve = reported_points(reported, "prober")
    p0 = curve[min(curve)] if curve else _number(reported.get("worst_p0"))
    best = _number(reported.get("prober_best"))
    if best is None and len(curve) > 1:
        best = (max if higher else min)(curve.values())
    gap = gap_closed(p0, best, _number(reported.get("pooled")))
    return None if math.isnan(gap) else gap


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt_num(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


def _fmt_key(value: Any) -> str:
    return f"{float(value):g}" if isinstance(value, int | float | np.number) else str(value)


def _lookup(mapping: Any, key: float) -> Any:
    """``mapping[key]`` with keys compared as numbers (YAML/JSON may have made them strings)."""
    if not isinstance(mapping, Mapping):
        return None
    for k, v in mapping.items():
        try:
            if math.isclose(float(k), float(key), rel_tol=1e-9, abs_tol=1e-12):
                return v
        except (TypeError, ValueError):
            continue
    return None


def experiment_summary(results_dir: Any, kind: str | None = None) -> dict[str, Any]:
    """Final primary metric (mean ± s.e. over seeds) per learner at p = 0 and at the best p,
    the gap to the pooled baseline closed by probing, the pooled baseline, the reported numbers
    and the data used, for one results directory.

    Conditions other than p are held at their reference value (``analysis.reference_conditions``:
    static grid values such as N_probe at their largest, knobs such as κ at their smallest); each
    varying one also gets a table of the probers' final metric by value and p. Every number is
    computed by ``userchoice.analysis`` (as in the figures and the HTML report).
    ``results_dir``: a path or an ``analysis.Results``. ``verdicts``: one
    ``analysis.Verdict`` per entry of the config's ``reported.checks``.
    """
    from userchoice import analysis

    res = analysis.load_results(results_dir)
    manifest = res.manifest
    config = manifest.get("config") or {}
    reported = dict(config.get("reported") or {})
    counts = res.runs["status"].value_counts().to_dict() if len(res.runs) else {}
    summary: dict[str, Any] = {
        "name": manifest.get("name"), "description": config.get("description", ""),
        "title": analysis.experiment_title({"name": manifest.get("name"), **config}),
        "kind": kind, "reported": reported, "n_runs": int(manifest.get("n_runs", 0)),
        "status": {k: int(v) for k, v in counts.items()}, "data": data_used(manifest, kind),
        "seconds": (manifest.get("timings") or {}).get("sweep_seconds"),
        "learner_names": (manifest.get("market_provenance") or {}).get("categories"),
    }
    if res.dynamics != "msgd":  # population dynamics, equilibria: market-level finals
        return _population_summary(res, summary, reported)
    metric = analysis.primary_metric(res.learners, reported.get("metric"))
    higher = analysis.higher_is_better(metric)
    pooled = res.baseline_of(metric)
    summary.update(metric=metric or reported.get("metric") or "—", higher_is_better=higher,
                   pooled=pooled)
    if metric is None:
        summary["empty"] = True
        return summary

    final = analysis.final_rows(res.learners)
    reference = analysis.reference_conditions(final, res.static_columns)
    base = analysis.at_conditions(final, reference)
    probers = analysis.probers(final)
    p_values = analysis.p_values(base)
    p_low = p_values[0]
    p_best = analysis.best_p(base, metric, higher) if len(p_values) > 1 else p_low
    by_p = analysis.stats_lookup(base, ["learner", "p"], metric)
    update_all = f"update_all_{metric}"
    update_all_by_p = analysis.stats_lookup(base, ["learner", "p"], update_all)
    n = int(manifest.get("n_learners") or final["learner"].max() + 1)
    per_learner = [{"learner": i, "prober": i in probers, "p_low": by_p.get((i, p_low)),
                    "p_best": by_p.get((i, p_best)),
                    "update_all": update_all_by_p.get((i, p_low))} for i in range(n)]
    at_low = [r for r in per_learner if r["p_low"]]
    worst = (min if higher else max)(at_low, key=lambda r: r["p_low"]["mean"]) if at_low \
        else None
    prober_by_p = {i: {p: by_p.get((i, p)) for p in p_values} for i in probers}
    gap, gap_se = {}, {}
    if len(p_values) > 1 and pooled is not None:
        for i in probers:
            low, best = by_p.get((i, p_low)), by_p.get((i, p_best))
            if low and best:
                gap[i], gap_se[i] = analysis.gap_closed_se(low, best, pooled)
            else:
                gap[i], gap_se[i] = math.nan, math.nan
    paper_gap = paper_gap_closed(reported, higher)
    by_condition = {}
    knobs = [k for k in analysis.CONDITION_KNOBS if k != "p"]
    for column in analysis.varying(final, [*res.static_columns, *knobs]):
        rows = analysis.at_conditions(final, reference, skip=[column])
        rows = rows[rows["learner"].isin(probers)] if probers else rows
        table: dict[Any, dict[float, dict[str, float]]] = {}
        for (value, p), stat in analysis.stats_lookup(rows, [column, "p"], metric).items():
            table.setdefault(value, {})[float(p)] = stat
        by_condition[column] = table
    summary.update(
        probers=probers, p_values=p_values, p_low=p_low, p_best=p_best, reference=reference,
        per_learner=per_learner, worst=worst, prober_by_p=prober_by_p, gap_closed=gap,
        gap_closed_se=gap_se, gap_closed_paper=paper_gap,
        verdicts=analysis.check_claims(analysis.ClaimData.from_results(res),
                                       reported.get("checks")),
        by_condition=by_condition,
        update_all=analysis.stat_of(base[base["p"] == p_low], update_all),
        seeds=int(base["seed"].nunique()) if "seed" in base else None)
    return summary


def _population_summary(res: Any, summary: dict[str, Any], reported: dict[str, Any]
                        ) -> dict[str, Any]:
    """A population-dynamics experiment: the final total risk, segmentation and learners per
    condition (mean ± s.e. over seeds), the equilibria reached, and the verdicts."""
    from userchoice import analysis

    market = res.market if res.market is not None else None
    metric = str(reported.get("metric") or "total_risk")
    summary.update(dynamics=res.dynamics, metric=metric, higher_is_better=False, pooled=None)
    if market is None or not len(market) or metric not in market:
        summary["empty"] = True
        return summary
    final = market[market["step"] == market.groupby("run_id")["step"].transform("max")]
    conditions = [c for c in res.conditions if c in final and final[c].nunique() > 1]
    rows = []
    columns = [c for c in dict.fromkeys((metric, "segmentation", "n_learners", "bayes_risk",
                                         "converged")) if c in final]
    for key, part in (final.groupby(conditions, sort=True) if conditions
                      else [((), final)]):
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(conditions, key, strict=True))
        rows.append({"where": where, **{c: analysis.stat_of(part, c) for c in columns}})
    phases = res.extra.get("phases")
    equilibria = None
    if phases is not None and len(phases):
        equilibria = {"reached": int(phases["converged"].sum()), "phases": len(phases)}
    summary.update(
        population_rows=rows, population_columns=columns, equilibria=equilibria,
        seeds=int(final["seed"].nunique()) if "seed" in final else None,
        verdicts=analysis.check_claims(res, reported.get("checks")))
    return summary


def _population_section(s: dict[str, Any]) -> list[str]:
    lines = [f"Final values at the last round, mean ± s.e. over {s['seeds']} seed(s):", ""]
    columns = s["population_columns"]
    header = ["condition", *columns]
    rows = [[", ".join(f"{k} = {_fmt_key(v) if isinstance(v, float) else v}"
                       for k, v in r["where"].items()) or "all runs",
             *(_fmt_stat(r[c]) for c in columns)] for r in s["population_rows"]]
    lines += [*_table(header, rows), ""]
    if s.get("equilibria"):
        e = s["equilibria"]
        lines += [f"Phases ending in an equilibrium (the stop rule held): {e['reached']} of "
                  f"{e['phases']}.", ""]
    return lines


def data_used(manifest: Mapping[str, Any], kind: str | None) -> dict[str, Any]:
    """What data a results directory was computed from (files and sha256 from provenance)."""
    provenance = manifest.get("data_provenance") or {}
    config = manifest.get("config") or {}
    files = [{"path": f.get("path"), "sha256": f.get("sha256")}
             for f in provenance.get("files") or [] if isinstance(f, Mapping)]
    status = {"paper": "full data (data directory)", "local": "substitute",
              "quick": "substitute (CI-sized run)"}.get(kind or "", "unknown")
    dataset = (config.get("data") or {}).get("dataset")
    if dataset in DATASETS and not DATASETS.get(dataset).file_backed:
        status = "synthetic"  # generated in memory, not read from files
    groups = ((config.get("population") or {}).get("groups") or {}).get("kind")
    setting = (config.get("equilibrium") or {}).get("setting")
    if dataset is None and groups is not None:  # population dynamics on synthetic groups
        status, dataset = "synthetic", f"{groups} groups"
    elif dataset is None and setting is not None:  # an equilibrium's synthetic users
        status, dataset = "synthetic", f"setting {setting}"
    extra = {}
    if provenance.get("categories_omitted"):
        extra["categories_omitted"] = provenance["categories_omitted"]
    embedder = provenance.get("embedder")
    if isinstance(embedder, Mapping):
        extra["embedder"] = embedder.get("name")
    return {"dataset": dataset, "status": status,
            "files": files, "n_train": provenance.get("n_train")
            or (provenance.get("split") or {}).get("n_train"), **extra}


def _learner_label(summary: dict[str, Any], learner: int) -> str:
    names = summary.get("learner_names")
    label = f"{learner}"
    if isinstance(names, list) and learner < len(names):
        label += f" ({names[learner]})"
    if learner in summary.get("probers", []):
        label += " *"
    return label


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _verdict_counts(s: dict[str, Any]) -> str:
    """``2 yes, 1 no`` over the experiment's verdicts; '—' without checks."""
    from userchoice.analysis import ANSWERS

    answers = [v.answer for v in s.get("verdicts") or []]
    return ", ".join(f"{answers.count(a)} {a}" for a in ANSWERS if a in answers) or "—"


def _gap_cell(s: dict[str, Any]) -> str:
    """The first prober's fraction of the gap closed, ours / the paper's."""
    gaps = s.get("gap_closed") or {}
    ours = "—"
    if gaps:
        learner = next(iter(gaps))
        ours = _fmt_gap(gaps[learner], (s.get("gap_closed_se") or {}).get(learner))
    return f"{ours} / {_fmt_gap(s.get('gap_closed_paper'))}"


def _overview_row(s: dict[str, Any]) -> list[str]:
    return [*_overview_cells(s), *(["—", "—"] if "error" in s or s.get("empty")
                                   else [_gap_cell(s), _verdict_counts(s)])]


def _overview_cells(s: dict[str, Any]) -> list[str]:
    if "error" in s:
        return [s["name"], "—", "—", "not run", "—", "—", "—", "—"]
    rep = s["reported"]
    files = ", ".join(Path(f["path"]).name for f in s["data"]["files"] if f.get("path"))
    data = f"{s['data']['status']}: {files or s['data']['dataset']}"
    runs = f"{s['status'].get('done', 0)}/{s['n_runs']}"
    if s.get("empty"):
        return [s["name"], data, s["metric"], runs, "—", "—", "—", "—"]
    if s.get("dynamics") in ("population", "equilibrium"):
        first = (s.get("population_rows") or [{}])[0].get(s["metric"])
        return [s["name"], data, s["metric"], runs, "—", _fmt_stat(first), "—", "—"]
    pooled = f"{_fmt_num(s['pooled'])} / {_fmt_num(rep.get('pooled'))}"
    worst = s["worst"]
    worst_text = (f"{_fmt_stat(worst['p_low'])} (learner {worst['learner']}) / "
                  f"{_fmt_num(rep.get('worst_p0'))}") if worst else "—"
    low, best = [], []
    for learner in s["probers"]:
        curve = s["prober_by_p"][learner]
        low.append(_fmt_stat(curve.get(s["p_low"])))
        best.append(_fmt_stat(curve.get(s["p_best"])))
    paper_low = _lookup(rep.get("prober"), s["p_low"])
    paper_best = rep.get("prober_best")
    if paper_best is None and isinstance(rep.get("prober"), Mapping) and rep["prober"]:
        top = max(rep["prober"], key=lambda k: float(k))
        paper_best = f"{_fmt_num(rep['prober'][top])} (p={_fmt_key(float(top))})"
    prober_low = f"{'; '.join(low) or '—'} / {_fmt_num(paper_low)}"
    prober_best = (f"{'; '.join(best) or '—'} (p={_fmt_key(s['p_best'])}) / "
                   f"{_fmt_num(paper_best) if not isinstance(paper_best, str) else paper_best}")
    if len(s["p_values"]) < 2:
        prober_best = "— (no p grid)"
    return [s["name"], data, s["metric"], runs, pooled, worst_text, prober_low, prober_best]


def _section(s: dict[str, Any]) -> list[str]:
    if "error" in s:
        return [f"## {s['name']}", "", f"Not run: {s['error']}", ""]
    rep = s["reported"]
    lines = [f"## {s['name']}", "", f"**{s.get('title') or s['name']}.** {s['description']}",
             ""]
    d = s["data"]
    lines.append(f"Data: {d['dataset']}, **{d['status']}**"
                 + (f", {d['n_train']} training users" if d.get("n_train") else ""))
    for f in d["files"]:
        lines.append(f"- `{f['path']}` (sha256 `{f['sha256']}`)")
    for key in ("categories_omitted", "embedder"):
        if d.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {d[key]}")
    seconds = s.get("seconds")
    lines += ["", f"Runs: {s['n_runs']} ({', '.join(f'{v} {k}' for k, v in s['status'].items())})"
              + (f"; sweep wall time {seconds:.1f} s" if seconds else ""), ""]
    if s.get("empty"):
        return [*lines, "No finished runs.", ""]
    if s.get("dynamics") in ("population", "equilibrium"):
        lines += _population_section(s)
        return lines + _claims_and_verdicts(s)
    better = "higher" if s["higher_is_better"] else "lower"
    held = ", ".join(f"{k} = {_fmt_key(v)}" for k, v in s["reference"].items()
                     if k in s["by_condition"])
    lines.append(f"Final `{s['metric']}` ({better} is better), mean ± s.e. over {s['seeds']} "
                 f"seed(s); * = prober" + (f"; held at {held}" if held else "") + ".")
    lines.append("")
    low, best = _fmt_key(s["p_low"]), _fmt_key(s["p_best"])
    header = ["learner", f"ours p={low}", f"paper p={low}"]
    if len(s["p_values"]) > 1:
        header += [f"ours p={best} (best)", f"paper p={best}"]
    rows = []
    for r in s["per_learner"]:
        paper_low = paper_best = None
        if r["prober"]:
            paper_low, paper_best = (_lookup(rep.get("prober"), s["p_low"]),
                                     _lookup(rep.get("prober"), s["p_best"]))
        row = [_learner_label(s, r["learner"]), _fmt_stat(r["p_low"]), _fmt_num(paper_low)]
        if len(s["p_values"]) > 1:
            row += [_fmt_stat(r["p_best"]), _fmt_num(paper_best)]
        rows.append(row)
    pooled = ["pooled baseline (one fit)", _fmt_num(s["pooled"]), _fmt_num(rep.get("pooled"))]
    rows.append(pooled + (["", ""] if len(s["p_values"]) > 1 else []))
    if s.get("update_all"):
        rows.append(["update-all copies", _fmt_stat(s["update_all"]), "—"]
                    + (["", ""] if len(s["p_values"]) > 1 else []))
    if s["worst"] is not None:
        rows.append([f"worst learner (learner {s['worst']['learner']})",
                     _fmt_stat(s["worst"]["p_low"]), _fmt_num(rep.get("worst_p0"))]
                    + (["", ""] if len(s["p_values"]) > 1 else []))
    if rep.get("prober_best") is not None and s["probers"]:
        at_best = s["prober_by_p"][s["probers"][0]].get(s["p_best"])
        rows.append(["prober at its best p", "", "", _fmt_stat(at_best),
                     _fmt_num(rep.get("prober_best"))])
    for k, (learner, gap) in enumerate(s.get("gap_closed", {}).items()):
        paper = s.get("gap_closed_paper") if k == 0 else None  # the paper reports one prober
        rows.append([f"gap closed, learner {_learner_label(s, learner)}", "", "",
                     _fmt_gap(gap, (s.get("gap_closed_se") or {}).get(learner)),
                     _fmt_gap(paper)])
    lines += [*_table(header, rows), ""]
    if s.get("gap_closed"):
        lines += [f"Gap closed = (prober at p={best} − at p={low}) / (pooled − at p={low}): the "
                  f"fraction of the distance to the pooled baseline that probing closes (1: "
                  f"reaches it; 0: no change; ± its s.e.). It compares across datasets whose "
                  f"ceilings differ; the paper's is computed from its reported numbers.", ""]
    if len(s["p_values"]) > 1 and s["probers"]:
        lines.append("Prober final metric by p (ours / paper):")
        lines.append("")
        header = ["learner", *(f"p={_fmt_key(p)}" for p in s["p_values"])]
        rows = []
        for learner, curve in s["prober_by_p"].items():
            cells = []
            for p in s["p_values"]:
                paper = _lookup(rep.get("prober"), p)
                cells.append(_fmt_stat(curve.get(p))
                             + (f" / {_fmt_num(paper)}" if paper is not None else ""))
            rows.append([_learner_label(s, learner), *cells])
        lines += [*_table(header, rows), ""]
    for column, table in s["by_condition"].items():
        ps = sorted({p for row in table.values() for p in row})
        who = "probers" if s["probers"] else "all learners"
        lines.append(f"Final metric of the {who} (pooled over them) by {column} and p:")
        lines.append("")
        paper_map = rep.get("by_n_probe") if column.endswith("n_probe") else None
        header = [column, *(f"p={_fmt_key(p)}" for p in ps)]
        if paper_map:
            header.append("paper")
        rows = []
        for value, row in table.items():
            cells = [_fmt_key(value), *(_fmt_stat(row.get(p)) for p in ps)]
            if paper_map:
                cells.append(_fmt_num(_lookup(paper_map, value)))
            rows.append(cells)
        lines += [*_table(header, rows), ""]
    return lines + _claims_and_verdicts(s)


def _claims_and_verdicts(s: dict[str, Any]) -> list[str]:
    rep = s["reported"]
    lines: list[str] = []
    claims = rep.get("claims") or []
    if claims:
        lines.append(f"Paper ({rep.get('source', 'reported')}):")
        lines += [f"- {c}" for c in claims]
        lines.append("")
    if s.get("verdicts"):
        lines.append("Verdicts on our results (yes / no: settled by differences beyond 2 s.e.; "
                     "unclear: within the noise; not tested: the runs lack what it needs):")
        lines.append("")
        lines += [f"- {v.claim}: **{v.answer}**" + (f" — {v.detail}" if v.detail else "")
                  for v in s["verdicts"]]
        lines.append("")
    return lines


def comparison_rows(s: dict[str, Any]) -> list[list[str]]:
    """The paper's reported numbers beside ours, as (quantity, paper, ours) rows, for an
    :func:`experiment_summary`: the pooled baseline, the worst learner without probing, the
    prober at each reported p and at its best p, each reported N_probe, the gap closed."""
    from userchoice.analysis import reported_points

    rep = s.get("reported") or {}
    if s.get("empty") or "error" in s:
        return []
    rows = []
    if rep.get("pooled") is not None or s.get("pooled") is not None:
        rows.append(["pooled baseline", _fmt_num(rep.get("pooled")), _fmt_num(s.get("pooled"))])
    worst = s.get("worst")
    if rep.get("worst_p0") is not None:
        rows.append([f"worst learner, p = {_fmt_key(s['p_low'])}", _fmt_num(rep["worst_p0"]),
                     f"{_fmt_stat(worst['p_low'])} (learner {worst['learner']})" if worst
                     else "—"])
    probers = s.get("probers") or []
    curve = s["prober_by_p"][probers[0]] if probers else {}
    for p, value in reported_points(rep, "prober").items():
        ours = next((stat for q, stat in curve.items() if math.isclose(q, p, abs_tol=1e-12)),
                    None)
        rows.append([f"prober, p = {_fmt_key(p)}", _fmt_num(value),
                     _fmt_stat(ours) if ours else "— (p not in our grid)"])
    if rep.get("prober_best") is not None:
        rows.append(["prober at its best p", _fmt_num(rep["prober_best"]),
                     f"{_fmt_stat(curve.get(s['p_best']))} (p = {_fmt_key(s['p_best'])})"
                     if curve else "—"])
    table = next((t for c, t in (s.get("by_condition") or {}).items() if c.endswith("n_probe")),
                 {})
    for n_probe, value in reported_points(rep, "by_n_probe").items():
        row = next((r for k, r in table.items() if math.isclose(float(k), n_probe)), None)
        stat = row.get(max(row)) if row else None
        rows.append([f"prober, N_probe = {_fmt_key(n_probe)}", _fmt_num(value),
                     _fmt_stat(stat) if stat else "— (not in our grid)"])
    if s.get("gap_closed") or s.get("gap_closed_paper") is not None:
        rows.append(["gap closed by probing (prober)", _fmt_gap(s.get("gap_closed_paper")),
                     _gap_cell(s).split(" / ")[0]])
    return rows


def render_summary(summaries: Sequence[dict[str, Any]], *, target: str, kind: str,
                   figures: Mapping[str, Sequence[Path]] | None = None,
                   figure_errors: Mapping[str, str] | None = None,
                   seconds: float | None = None, out: Path | None = None) -> str:
    """``summary.md``: an overview row per experiment, then a section per experiment."""
    data_note = {"paper": "the paper's full datasets from the data directory",
                 "local": "real substitutes (not the paper's files): the ACS sample shipped "
                          "with the package, MovieLens 100K and an Amazon review sample from "
                          "the data directory",
                 "quick": "real substitutes, CI-sized runs (checks the pipeline; the numbers "
                          "are not comparable with the paper's)"}[kind]
    if target == "neighbours":  # the neighbouring models: their own papers, shape verdicts
        lines = [f"# Reproduction summary: {target} ({kind} configs)", "",
                 f"The neighbouring models of this research line (NEIGHBOURS.md): Su & Dean's "
                 f"streaming protocol (su_dean_…), Dean et al.'s participation dynamics "
                 f"(dean_…), Jagadeesan et al.'s competition for market share "
                 f"(jagadeesan_…), with probing where no paper has looked. Data: {data_note}. "
                 f"Each "
                 f"published claim is judged as a shape verdict on our runs (not a snapshot "
                 f"of numbers); the final values are ours, mean ± standard error over seeds.",
                 ""]
        if seconds is not None:
            lines += [f"Wall time: {seconds:.1f} s.", ""]
        header = ["experiment", "data", "metric", "runs done", "pooled", "final (first "
                  "condition)", "prober, p=0", "prober, best p", "gap closed", "verdicts"]
        lines += [*_table(header, [_overview_row(s) for s in summaries]), ""]
        return _render_sections(lines, summaries, figures, figure_errors, out)
    lines = [f"# Reproduction summary: {target} ({kind} configs)", "",
             f"Data: {data_note}. Paper numbers: SPEC §9. Each cell is ours / paper; ours is "
             f"the mean ± standard error over seeds of the final value of the primary metric "
             f"(test accuracy for classifiers, masked test MSE for MovieLens), rounded to the "
             f"precision its standard error supports. Where the data is a substitute its "
             f"ceiling differs from the paper's (see the pooled baseline): compare the "
             f"fraction of the gap closed and the verdict per claim, not the raw numbers.", ""]
    if seconds is not None:
        lines += [f"Wall time: {seconds:.1f} s.", ""]
    header = ["experiment", "data", "metric", "runs done", "pooled", "worst learner, p=0",
              "prober, p=0", "prober, best p", "gap closed", "verdicts"]
    lines += [*_table(header, [_overview_row(s) for s in summaries]), ""]
    return _render_sections(lines, summaries, figures, figure_errors, out)


def _render_sections(lines: list[str], summaries: Sequence[dict[str, Any]],
                     figures: Mapping[str, Sequence[Path]] | None,
                     figure_errors: Mapping[str, str] | None, out: Path | None) -> str:
    for s in summaries:
        lines += _section(s)
        written = (figures or {}).get(s["name"])
        if written:
            shown = [p for p in written if p.suffix == ".png"] or list(written)
            rel = [p.relative_to(out) if out and p.is_relative_to(out) else p for p in shown]
            lines += ["Figures: " + ", ".join(f"`{p}`" for p in rel), ""]
    pairs = {k: v for k, v in (figures or {}).items() if "_vs_" in k}
    if pairs:
        lines += ["## Bad vs good", ""]
        for key, written in pairs.items():
            rel = [p.relative_to(out) if out and p.is_relative_to(out) else p for p in written]
            lines.append(f"- {key}: " + ", ".join(f"`{p}`" for p in rel))
        lines.append("")
    if figure_errors:
        lines += ["## Figure errors", ""]
        lines += [f"- {k}: {v}" for k, v in figure_errors.items()]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------------


class ReproduceError(RuntimeError):
    """Some experiments could not run; the others' results, figures and summary are written."""

    def __init__(self, summary: Path, errors: Mapping[str, str]) -> None:
        self.summary = summary
        self.errors = dict(errors)
        listed = "\n".join(f"  {name}: {error}" for name, error in self.errors.items())
        super().__init__(f"{len(self.errors)} experiment(s) failed (the summary of the rest is "
                         f"{summary}):\n{listed}")


def _readable(dest: Path) -> bool:
    """``dest`` is a results directory whose manifest reads (one to copy shared runs from; a
    damaged sibling is that experiment's problem, not this one's)."""
    from userchoice.experiments.store import ResultsDir, ResultsError

    store = ResultsDir(dest)
    try:
        return store.manifest_path.is_file() and bool(store.read_manifest())
    except (ResultsError, OSError):
        return False


def _finished(dest: Path, config: ExperimentConfig) -> bool:
    """Every run of ``config`` is already in ``dest`` (so even planning can be skipped)."""
    from userchoice.experiments.runner import config_hash
    from userchoice.experiments.store import ResultsDir

    store = ResultsDir(dest)
    if not store.manifest_path.is_file():
        return False
    manifest = store.read_manifest()
    if manifest.get("config_hash") != config_hash(config) or manifest.get("status") != "finished":
        return False
    return len(store.table("runs")) == int(manifest.get("n_runs", -1))


def reproduce(
    target: str,
    out: str | Path,
    quick: bool = False,
    local: bool = False,
    runner: Any = None,
    data_dir: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    *,
    configs: str | Path | None = None,
    only: Sequence[str] | None = None,
    figures: bool = True,
    chunk_size: int | None = None,
    phase: Callable[[str, str], None] | None = None,
    step_progress: Callable[[str, int, int], None] | None = None,
    experiments: Callable[[int, int], None] | None = None,
) -> Path:
    """Run the shipped configs of ``target`` into ``out/<name>`` (resumable: finished runs are
    skipped), write their figures and ``out/summary.md``; returns the summary's path.

    ``quick``: the CI-sized configs (on the substitutes); ``local``: the paper's settings on the
    substitutes; neither: the paper's settings on the full data. ``progress(name, done,
    total)`` is called as runs finish, ``phase(name, label)`` and ``step_progress(name,
    done, total)`` as ``run_experiment``'s (with the experiment's name first; ``phase(target,
    "figures and summary")`` at the end), ``experiments(done, total)`` before the first
    experiment and after each. ``configs``: another folder of config sets; ``only``:
    a subset of experiment names; ``figures=False`` skips the figures. A run two experiments
    share (the same run id) is computed once and copied into the other's directory
    (``run_experiment``'s ``reuse``).

    An experiment that raises (a dataset missing, …) does not stop the others: after the
    figures and the summary of the rest are written, ``ReproduceError`` names each failure.
    Runs that fail or diverge inside a sweep are recorded in its results directory and counted
    in ``reproduce.json`` (``runs``), as the sweep records them.
    """
    from userchoice.experiments.runner import run_experiment
    from userchoice.experiments.store import ResultsDir

    kind = "quick" if quick else "local" if local else "paper"
    paths = select_configs(target, kind, configs, only)
    if figures:
        _plots()  # fail before hours of computing, not after
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loaded = [(path, load_experiment(path, data_dir=data_dir)) for path in paths]
    from userchoice.analysis import validate_checks

    for path, config in loaded:  # a mistyped claim check fails now, not after the runs
        validate_checks(config.reported.get("checks"), where=f"{path}: reported.checks")
    rank = {name: i for i, name in enumerate(EXPERIMENT_ORDER)}
    loaded.sort(key=lambda item: (rank.get(item[1].name, len(rank)), item[1].name))
    names = [config.name for _, config in loaded]
    timings: dict[str, float] = {}
    failures: dict[str, str] = {}
    def named(callback: Callable | None, name: str) -> Callable | None:
        return None if callback is None else (lambda *args: callback(name, *args))

    # Each experiment's figures are drawn in the background once its sweep ends.
    background = BackgroundFigures(out, names) if figures else None
    try:
        for index, (_path, config) in enumerate(loaded):
            if experiments is not None:
                experiments(index, len(loaded))
            dest = out / config.name
            began = time.perf_counter()
            try:
                if not _finished(dest, config):
                    # Runs two experiments share (census_good is the κ = 0 slice of
                    # census_good_kappa) are computed once: copied from a sibling that has them.
                    siblings = [out / other for other in names
                                if other != config.name and _readable(out / other)]
                    run_experiment(config, dest, runner=runner, reuse=siblings,
                                   data_dir=None if data_dir is None else str(data_dir),
                                   chunk_size=chunk_size, progress=named(progress, config.name),
                                   phase=named(phase, config.name),
                                   step_progress=named(step_progress, config.name))
                elif progress is not None:
                    total = int(ResultsDir(dest).read_manifest().get("n_runs", 0))
                    progress(config.name, total, total)
            except Exception as error:  # e.g. a dataset missing: the other experiments go on
                failures[config.name] = f"{type(error).__name__}: {error}"
            timings[config.name] = time.perf_counter() - began
            if background is not None and config.name not in failures:
                background.experiment_done(config.name)
    except BaseException:  # interrupted: no figures wanted
        if background is not None:
            background.stop()
        raise
    if experiments is not None:
        experiments(len(loaded), len(loaded))
    if phase is not None:
        phase(target, "figures and summary")
    ran = [name for name in names if name not in failures]
    written, errors = (write_figures(out, ran, drawn=background.collect())
                       if background is not None else ({}, {}))
    summaries = [experiment_summary(out / name, kind) if name not in failures
                 else {"name": name, "error": failures[name]} for name in names]
    seconds = time.perf_counter() - started
    summary = out / "summary.md"
    text = render_summary(summaries, target=target, kind=kind, figures=written,
                          figure_errors=errors, seconds=seconds, out=out)
    atomic_write(summary, lambda f: f.write(text.encode("utf-8")))
    record = {"target": target, "kind": kind, "configs": [str(p) for p in paths],
              "experiments": names, "seconds": seconds, "experiment_seconds": timings,
              "runs": {s["name"]: {"total": s["n_runs"], **s["status"]}
                       for s in summaries if "error" not in s},
              "errors": failures,
              "figures": {k: [str(p) for p in v] for k, v in written.items()},
              "figure_errors": errors}
    atomic_write(out / "reproduce.json", lambda f: f.write(json.dumps(record, indent=2).encode()))
    if failures:
        raise ReproduceError(summary, failures)
    return summary
