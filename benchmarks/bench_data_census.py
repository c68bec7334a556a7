"""Census loader speed and memory on a synthetic ACS person file (goal: 1.5M rows in < 30 s).

Writes a person CSV shaped like the Census files (``write_synthetic_acs``: real column names,
zero-padded codes, blanks) to a temporary folder, then times ``load_census`` (ACSEmployment: read,
check every line's field count, filter, fill, split, standardise) in a fresh process, so the
peak resident memory reported is the loader's own (the process's baseline after imports is
reported beside it).

    python benchmarks/bench_data_census.py                    # 1.5M rows, plain CSV
    python benchmarks/bench_data_census.py --rows 200000 --format zip
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

GOAL_SECONDS = 30.0


def _memory_mib(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process from /proc; elsewhere ru_maxrss.

    ru_maxrss survives fork+exec on Linux (the child would report the parent's peak), so the
    per-address-space /proc figures are preferred.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(path: str, task: str, queue: multiprocessing.Queue) -> None:
    from userchoice.data.census import load_census

    baseline = _memory_mib("VmRSS")
    start = time.perf_counter()
    ds = load_census(path, task=task)
    seconds = time.perf_counter() - start
    queue.put({"load_seconds": seconds, "peak_rss_mib": _memory_mib("VmHWM"),
               "baseline_rss_mib": baseline, "n_train": ds.n_train,
               "n_test": int(ds.x_test.shape[0]), "n_features": ds.n_features,
               "label_rate": ds.provenance["label_rate"],
               "x_bytes_mib": (ds.x_train.nbytes + ds.x_test.nbytes) / 2**20})


def run(rows: int = 1_500_000, *, fmt: str = "csv", task: str = "ACSEmployment",
        seed: int = 0) -> dict:
    """Write a synthetic person file of ``rows`` rows and time loading it; returns the figures."""
    from userchoice.data.census import write_synthetic_acs

    with tempfile.TemporaryDirectory(prefix="bench_census_") as folder:
        name = "psam_p01.csv.gz" if fmt == "gz" else "psam_p01.csv"
        start = time.perf_counter()
        path = write_synthetic_acs(Path(folder) / name, rows, seed)
        if fmt == "zip":
            zipped = Path(folder) / "csv_pal.zip"
            with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(path, "psam_p01.csv")
            path.unlink()
            path = zipped
        write_seconds = time.perf_counter() - start
        file_mib = path.stat().st_size / 2**20
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(target=_load, args=(str(path), task, queue))
        child.start()
        result = queue.get()
        child.join()
    return {"rows": rows, "format": fmt, "task": task, "file_mib": round(file_mib, 1),
            "write_seconds": round(write_seconds, 2),
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()},
            "goal_seconds": GOAL_SECONDS, "meets_goal": result["load_seconds"] < GOAL_SECONDS}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--format", choices=("csv", "gz", "zip"), default="csv")
    parser.add_argument("--task", default="ACSEmployment")
    args = parser.parse_args(argv)
    result = run(args.rows, fmt=args.format, task=args.task)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["meets_goal"] else 1)
