"""Data-pipeline benchmarks (issue: real data), run together.

- MovieLens: a synthetic 10M-row ``::`` ratings file → top-200 matrix, mask and 5-d user
  factors; goal < 60 s and < 4 GB on 2 cores.
- ACS: a synthetic 1.5M-row person file → ACSEmployment features; goal < 30 s.

    python benchmarks/bench_data.py [--quick]

Each part runs in its own process so peak-memory figures do not mix.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = {
    # script, size argument, full size, quick size, goal (s), the figure compared to the goal
    "movielens": ("bench_data_movielens.py", "n_ratings", 10_000_000, 300_000, 60.0,
                  "load_movielens_s"),
    "census": ("bench_data_census.py", "rows", 1_500_000, 50_000, 30.0, "load_seconds"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args(argv)
    failed = 0
    for name, (script, arg, full, quick, goal, timed) in PARTS.items():
        size = quick if args.quick else full
        code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); "
                f"from {script[:-3]} import run; print('RESULT', json.dumps(run({arg}={size})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"{name}: FAILED\n{proc.stdout}{proc.stderr}")
            failed += 1
            continue
        figures = json.loads(lines[-1][len("RESULT "):])
        seconds = figures[timed]
        print(f"{name:10s} {size:>11,} rows: {seconds:7.1f} s (goal < {goal:.0f} s), "
              f"peak {figures.get('peak_rss_mib', float('nan')):7.0f} MiB; {json.dumps(figures)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
