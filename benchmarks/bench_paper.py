"""Time ``userchoice reproduce paper --local`` (issue 9: ≤ 5 min on 2 cores, first run, cold
compilation cache), per experiment: setup (data, preferences, ERM, baseline), compile, simulate.

    python benchmarks/bench_paper.py                  # the whole local set, cold cache
    python benchmarks/bench_paper.py --quick          # the CI-sized set
    python benchmarks/bench_paper.py --only census_good --only census_bad

The reproduction runs in a fresh process with an empty persistent compilation cache and a new
output folder (both temporary unless ``--out``), so nothing is reused from an earlier run; the
per-experiment figures come from each results directory's ``manifest.json`` timings and
``reproduce.json``. Peak RSS and user/wall CPU are those of that process (children included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 300.0


def child(target: str, out: Path, quick: bool, only: list[str]) -> None:
    from userchoice.reproduce import reproduce

    reproduce(target, out, quick=quick, local=not quick, only=only or None)


def table(out: Path) -> list[dict]:
    record = json.loads((out / "reproduce.json").read_text())
    rows = []
    for name in record["experiments"]:
        manifest_path = out / name / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        timings = manifest.get("timings") or {}
        setup = timings.get("data_seconds", 0.0) + timings.get("init_seconds", 0.0)
        compile_s = timings.get("compile_seconds", 0.0)
        sweep = timings.get("sweep_seconds", 0.0)
        rows.append({"experiment": name, "setup": setup, "compile": compile_s,
                     "simulate": max(0.0, sweep - compile_s),
                     "total": record["experiment_seconds"].get(name, float("nan")),
                     # runs copied from another experiment of the set (the same run ids)
                     "copied": sum((manifest.get("reused") or {}).values()),
                     "error": record["errors"].get(name)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="paper")
    parser.add_argument("--quick", action="store_true", help="the CI-sized set instead of local")
    parser.add_argument("--only", action="append", default=[], help="one experiment (repeat)")
    parser.add_argument("--out", type=Path, default=None, help="keep the results here")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the data directory with the MovieLens and Amazon files "
                             "(default: $USERCHOICE_DATA, else the user data folder)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.target, args.out, args.quick, args.only)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "results"
        env = {**os.environ, "USERCHOICE_COMPILATION_CACHE": str(Path(tmp) / "jax-cache")}
        if args.data_dir is not None:
            env["USERCHOICE_DATA"] = str(args.data_dir)
        command = [sys.executable, __file__, "--child", "--target", args.target, "--out",
                   str(out), *(["--quick"] if args.quick else []),
                   *(f"--only={name}" for name in args.only)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, env=env)  # failed experiments are in the table
        if done.returncode != 0 and not (out / "reproduce.json").exists():
            return done.returncode
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows = table(out)

    kind = "quick" if args.quick else "local"
    print(f"\nreproduce {args.target} --{kind}: {wall:.1f} s wall (goal ≤ {GOAL_SECONDS:.0f} s "
          f"for paper --local), user/wall CPU {cpu / wall:.2f}, peak RSS "
          f"{after.ru_maxrss / 1024:.0f} MiB")
    print(f"{'experiment':<26}{'setup s':>9}{'compile s':>11}{'simulate s':>12}{'total s':>9}"
          f"{'copied runs':>13}")
    for row in rows:
        note = f"  FAILED: {row['error']}" if row["error"] else ""
        print(f"{row['experiment']:<26}{row['setup']:9.1f}{row['compile']:11.1f}"
              f"{row['simulate']:12.1f}{row['total']:9.1f}{row['copied']:13d}{note}")
    sums = {k: sum(r[k] for r in rows) for k in ("setup", "compile", "simulate", "total")}
    print(f"{'sum':<26}{sums['setup']:9.1f}{sums['compile']:11.1f}{sums['simulate']:12.1f}"
          f"{sums['total']:9.1f}   (the rest of the wall time: figures and summary)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
