"""MovieLens data pipeline at ML-10M scale: read → top-200 matrix → MF user factors.

Writes a synthetic ``ratings.dat`` shaped like ML-10M (10M ratings, ~70k users, ~10k movies,
movie popularity ∝ rank^-0.9 and log-normal user activity, so the 200 most-rated movies hold
about 3M ratings) into a temporary directory, then times, in a fresh child process pinned to
``--cores`` CPUs: ``read_ratings``, ``ratings_matrix``, ``fit_biased_mf`` (numba compile or cache
load timed apart), and the whole ``load_movielens`` (which also hashes the file and splits),
with the child's peak resident memory. Target: < 60 s and < 4 GB on 2 cores.

    python benchmarks/bench_data_movielens.py                 # 10M ratings
    python benchmarks/bench_data_movielens.py --ratings 1000000
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


def _pipeline(path: str) -> dict:
    """Runs in the child: times each stage on ``path``."""
    import numpy as np

    from userchoice.data import movielens

    out: dict = {}
    start = time.perf_counter()
    frame = movielens.read_ratings(path)
    out["read_s"] = time.perf_counter() - start
    out["ratings_read"] = len(frame)

    start = time.perf_counter()
    matrix = movielens.ratings_matrix(frame, 200)
    out["matrix_s"] = time.perf_counter() - start
    out["users"], out["ratings_kept"] = len(matrix.user_ids), len(matrix.values)
    del frame

    start = time.perf_counter()
    movielens.fit_biased_mf(np.array([0]), np.array([0]), np.array([3.0]), n_epochs=1)
    out["jit_s"] = time.perf_counter() - start  # numba compile, or load from its disk cache

    start = time.perf_counter()
    model = movielens.fit_biased_mf(matrix.rows, matrix.cols, matrix.values,
                                    n_users=len(matrix.user_ids), n_items=len(matrix.movie_ids))
    out["factors_s"] = time.perf_counter() - start
    out["updates_per_s"] = 20 * len(matrix.values) / out["factors_s"]
    out["train_rmse"], out["rating_std"] = model.train_rmse, float(np.std(matrix.values))
    del matrix, model
    out["stages_total_s"] = out["read_s"] + out["matrix_s"] + out["jit_s"] + out["factors_s"]

    start = time.perf_counter()
    dataset = movielens.load_movielens(path)
    out["load_movielens_s"] = time.perf_counter() - start
    out["x_train_shape"] = list(dataset.x_train.shape)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(n_ratings: int = 10_000_000, *, n_users: int = 70_000, n_movies: int = 10_000,
        seed: int = 0, cores: int | None = 2, workdir: str | Path | None = None) -> dict:
    """Write the synthetic file, run the timed pipeline in a child process, return figures."""
    from userchoice.data.movielens import write_synthetic_ratings

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "ratings.dat"
        start = time.perf_counter()
        write_synthetic_ratings(path, n_ratings, n_users, n_movies, seed, fmt="::")
        figures: dict = {"n_ratings": n_ratings, "n_users": n_users, "n_movies": n_movies,
                         "file_mb": path.stat().st_size / 1e6,
                         "write_s": time.perf_counter() - start}
        command = [sys.executable, __file__, "--child", str(path)]
        if cores:
            command += ["--cores", str(cores)]
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{child.stderr}")
        figures.update(json.loads(child.stdout.strip().splitlines()[-1]))
    return figures


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=70_000)
    parser.add_argument("--movies", type=int, default=10_000)
    parser.add_argument("--cores", type=int, default=2, help="CPUs the timed child may use "
                        "(0: no pinning)")
    parser.add_argument("--child", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    if args.child:
        if args.cores and hasattr(os, "sched_setaffinity"):
            available = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, available[: args.cores])
            figures = {"cores": min(args.cores, len(available))}
        else:
            figures = {"cores": os.cpu_count()}
        figures.update(_pipeline(args.child))
        print(json.dumps(figures))
        return None
    figures = run(args.ratings, n_users=args.users, n_movies=args.movies, cores=args.cores)
    print(f"synthetic ratings.dat: {figures['n_ratings']:,} ratings, {figures['file_mb']:.0f} MB "
          f"(written in {figures['write_s']:.1f} s, not timed below)")
    print(f"on {figures['cores']} cores: read {figures['read_s']:.2f} s · top-200 matrix "
          f"{figures['matrix_s']:.2f} s ({figures['users']:,} users, "
          f"{figures['ratings_kept']:,} ratings) · MF jit/cache {figures['jit_s']:.2f} s · "
          f"MF 20 epochs {figures['factors_s']:.2f} s "
          f"({figures['updates_per_s'] / 1e6:.0f}M updates/s, train RMSE "
          f"{figures['train_rmse']:.3f} vs rating std {figures['rating_std']:.3f})")
    print(f"stages total {figures['stages_total_s']:.1f} s; load_movielens end to end "
          f"{figures['load_movielens_s']:.1f} s; peak memory {figures['peak_rss_mib']:.0f} MiB")
    if args.json:
        print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
