"""Runs computed once: a sweep copies the finished runs another results directory holds.

A run id is the content hash of everything the run's numbers depend on (data and its files'
content, market, learner, engine, probing, static values, knobs, package version;
``plan.run_id``), so two sweeps that share an id share the run: ``census_good`` is the κ = 0
slice of ``census_good_kappa``. ``run_experiment(..., reuse=[DIR, ...])`` copies such runs
(their rows of every table) into its own directory as one chunk per source, keyed
``reused-<digest>``, before it computes the rest; those runs are then left out of the chunking,
so the others pack into full chunks instead of padded ones.

The copies are the source's numbers: equal to what this sweep would compute to float tolerance
(a run's numbers do not depend on its batch mates, ``test_run_alone_equals_run_inside_a_batch``),
not bit for bit when the two sweeps compiled other chunk lengths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from userchoice.experiments.plan import Plan, canonical_json, code_version
from userchoice.experiments.store import ALL_TABLES, ResultsDir, ResultsError, Scan

PREFIX = "reused-"  # chunk key prefix of copied runs
REUSABLE = ("done", "diverged")  # statuses worth copying: a failed run is computed again


@dataclass(frozen=True)
class Reusable:
    """Runs of this sweep that ``source`` holds finished: their rows of each table."""

    source: Path
    tables: dict[str, pd.DataFrame]  # "runs" and every other table the source has

    @property
    def run_ids(self) -> list[str]:
        return sorted(self.tables["runs"]["run_id"])


def reused_run_ids(scan: Scan) -> set[str]:
    """Runs of a directory that were copied in (its ``reused-`` chunks)."""
    return {rid for key, runs in scan.committed.items() if key.startswith(PREFIX)
            for rid in runs["run_id"]}


# The config sections every run id of a streaming sweep hashes whole (``plan.run_id``).
SHARED_SECTIONS = ("dynamics", "data", "market", "learner", "init")


def _may_share(manifest: dict, plan: Plan) -> bool:
    """Whether a directory can hold runs of this plan at all (the same package version and
    the same data, market, learner and init sections), read from its manifest alone: a cheap
    test before its tables are read. The run ids decide."""
    recorded = manifest.get("config") or {}
    ours = plan.config.model_dump(mode="json")
    return (manifest.get("identity") or {}).get("code_version") == code_version() and all(
        canonical_json(recorded.get(k)) == canonical_json(ours.get(k)) for k in SHARED_SECTIONS)


def find_reusable(plan: Plan, sources: Sequence[str | Path], wanted: set[str],
                  out: Path) -> list[Reusable]:
    """The runs among ``wanted`` that ``sources`` hold committed and done or diverged, each
    taken from the first source that has it. A source must be a results directory
    (``ResultsError`` naming it otherwise); ``out`` itself is skipped."""
    wanted = set(wanted) & plan.run_ids
    found = []
    for source in sources:
        store = ResultsDir(Path(source))
        if not store.manifest_path.is_file():
            raise ResultsError(f"reuse: {store.path} is not a results directory (no "
                               f"manifest.json); name a directory a sweep wrote")
        if not wanted or store.path.resolve() == Path(out).resolve() or not _may_share(
                store.read_manifest(), plan):
            continue
        runs = store.table("runs")
        if not len(runs):
            continue
        runs = runs[runs["run_id"].isin(wanted) & runs["status"].isin(REUSABLE)]
        runs = runs.drop_duplicates("run_id").reset_index(drop=True)
        if not len(runs):
            continue
        ids = set(runs["run_id"])
        tables = {"runs": runs}
        for name in ALL_TABLES:
            if name != "runs" and (store.path / name).is_dir():
                frame = store.table(name)
                tables[name] = frame[frame["run_id"].isin(ids)].reset_index(drop=True) \
                    if len(frame) else frame
        found.append(Reusable(store.path, tables))
        wanted -= ids
    return found


def write_reused(store: ResultsDir, plan: Plan, item: Reusable) -> str:
    """Commit ``item``'s runs into ``store`` as one chunk; its key. The runs table takes this
    plan's columns (group index, knobs, static values: the same values, the group index may
    differ) and the source's results (status, reason, diverged step, seconds)."""
    runs = item.tables["runs"].copy()
    key = PREFIX + hashlib.sha256("".join(item.run_ids).encode()).hexdigest()[:12]
    rows = {r["run_id"]: r for g in plan.groups for r in g.rows}
    planned = pd.DataFrame([rows[rid] for rid in runs["run_id"]])
    for column in planned.columns:
        runs[column] = planned[column].to_numpy()
    runs["chunk"] = key
    empty = pd.DataFrame()
    store.write_chunk(key, runs, item.tables.get("learners", empty),
                      item.tables.get("market", empty),
                      extra={k: v for k, v in item.tables.items()
                             if k not in ("runs", "learners", "market")})
    return key
