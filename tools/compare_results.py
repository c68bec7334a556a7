"""Run every config of a set and compare the Parquet tables of two such runs.

Used to show that a refactoring leaves behaviour unchanged: run the set with the old code,
then with the new, then compare. Rows are aligned on what identifies them (the run's knob and
static values, the step, the learner), not on run ids or chunk names, which may change with the
package version; discrete columns must match exactly, float columns to ``--rtol``/``--atol``
(the batch-invariance tolerance of float32 runs).

    python tools/compare_results.py run OUT [--set quick]      # userchoice run each config
    python tools/compare_results.py compare BEFORE AFTER       # table-by-table comparison
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

IDENTITY = ("run_id", "chunk", "seconds", "group")  # bookkeeping, not behaviour
TABLES = ("runs", "learners", "market")


def shipped_configs() -> Path:
    """The config sets of the installed package (``userchoice/configs``); a tree from before
    they were package data kept them in ``configs/`` at its root."""
    try:
        from userchoice.experiments.paths import configs_root
    except ImportError:
        return Path(__file__).resolve().parents[1] / "configs"
    return configs_root()


def run_set(out: Path, config_set: str, root: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for config in sorted((root / config_set).glob("*.yaml")):
        dest = out / config.stem
        started = time.perf_counter()
        # Through the console-script entry point (works with any version of the package).
        proc = subprocess.run([sys.executable, "-c", "from userchoice.cli import app; app()",
                               "run", str(config), "--out", str(dest)],
                              capture_output=True, text=True)
        print(f"{config.stem:28s} exit {proc.returncode}  {time.perf_counter() - started:6.1f} s",
              flush=True)
        if proc.returncode not in (0, 1):
            failures += 1
            print(proc.stdout[-2000:], proc.stderr[-2000:])
    return failures


def _table(folder: Path, name: str) -> pd.DataFrame:
    parts = [pd.read_parquet(p) for p in sorted((folder / name).glob("*.parquet"))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _keyed(folder: Path, name: str) -> pd.DataFrame:
    """A table with every row labelled by its run's knob/static values instead of its run id."""
    runs = _table(folder, "runs")
    labels = [c for c in runs.columns if c not in (*IDENTITY, "status", "reason",
                                                   "diverged_step")]
    runs = runs.copy()
    runs["_key"] = runs[labels].astype(str).agg("|".join, axis=1)
    if name == "runs":
        frame = runs
    else:
        frame = _table(folder, name).merge(runs[["run_id", "_key"]], on="run_id")
    order = [c for c in ("_key", "step", "learner") if c in frame.columns]
    drop = [c for c in IDENTITY if c in frame.columns]
    return frame.drop(columns=drop).sort_values(order).reset_index(drop=True)


def compare_dirs(before: Path, after: Path, rtol: float, atol: float) -> list[str]:
    problems = []
    for name in TABLES:
        a, b = _keyed(before, name), _keyed(after, name)
        if len(a) != len(b):
            problems.append(f"{name}: {len(a)} rows before, {len(b)} after")
            continue
        if set(a.columns) != set(b.columns):
            problems.append(f"{name}: columns differ: only before {sorted(set(a) - set(b))}, "
                            f"only after {sorted(set(b) - set(a))}")
            continue
        worst = 0.0
        for column in a.columns:
            x, y = a[column], b[column]
            if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
                xv, yv = x.to_numpy(float), y.to_numpy(float)
                ok = np.isclose(xv, yv, rtol=rtol, atol=atol, equal_nan=True)
                if not ok.all():
                    problems.append(f"{name}.{column}: {int((~ok).sum())} values differ "
                                    f"beyond tolerance")
                finite = np.isfinite(xv) & np.isfinite(yv)
                if finite.any():
                    rel = np.abs(xv - yv)[finite] / np.maximum(np.abs(xv[finite]), atol)
                    worst = max(worst, float(rel.max()))
            elif not x.astype(str).equals(y.astype(str)):
                problems.append(f"{name}.{column}: discrete values differ")
        print(f"  {name:9s} {len(a):7d} rows × {len(a.columns):2d} columns, "
              f"max relative difference {worst:.2e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="userchoice run every config of a set into OUT/<name>")
    run.add_argument("out", type=Path)
    run.add_argument("--set", default="quick", dest="config_set")
    run.add_argument("--configs", type=Path, default=None,
                     help="folder of the config sets (default: the installed package's)")
    cmp = sub.add_parser("compare", help="compare the tables of two result roots")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    cmp.add_argument("--rtol", type=float, default=2e-6)
    cmp.add_argument("--atol", type=float, default=1e-7)
    args = parser.parse_args(argv)
    if args.command == "run":
        return 1 if run_set(args.out, args.config_set, args.configs or shipped_configs()) else 0
    bad = 0
    names = sorted(p.name for p in args.before.iterdir() if (p / "runs").is_dir())
    for name in names:
        print(name)
        problems = compare_dirs(args.before / name, args.after / name, args.rtol, args.atol)
        for problem in problems:
            print(f"  DIFFERS {problem}")
        bad += bool(problems)
    print(f"{len(names) - bad}/{len(names)} configs equal")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
