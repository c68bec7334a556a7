"""Engine vs the NumPy reference loop, on census- and MovieLens-shaped synthetic markets.

- census (SPEC §7): ≈38k training users, d = 16, n = 5, B = 150, T = 4000, N_probe = 100,
  P = 150, prober {2}, evaluation every 100 steps; 240 runs = 15 seeds × 16 (p, κ) points.
  Goals (issue 9): ≥ 100 runs/s, ratio ≥ 100×.
- movielens: 943 users, d = 5, m = 200 outputs with a 6 % rated mask, B = 50, T = 4000,
  N_probe = 1000, P = 100, evaluation every 500; 99 runs = 11 seeds × 9 p. Goal: ratio ≥ 50×.

The reference runs one run at a time; timing all runs takes long, so it times
``--reference-runs`` of them and scales (it says so). Both are measured in this process, so a
loaded machine slows both. Printed: seconds, runs/s, the ratio, user/wall CPU during the
engine's sweep (2 workers on 2 cores should give ≈ 2), peak RSS, and compile time cold (an empty
persistent compilation cache) and warm (the same program compiled again in a new process,
loaded from that cache) — each in a fresh subprocess, so nothing in this process is reused.

    python benchmarks/bench_engine.py                    # census, full
    python benchmarks/bench_engine.py --shape movielens
    python benchmarks/bench_engine.py --quick            # small smoke version
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

import numpy as np

from userchoice.data.dataset import Dataset
from userchoice.engine import EngineSpec, knob_grid, predraw, simulate
from userchoice.families import Logistic, MaskedMultiSquared
from userchoice.fitting import erm_init
from userchoice.market import Market
from userchoice.preferences import Preferences
from userchoice.probing import ProbingSpec
from userchoice.reference import run_reference
from userchoice.synthetic import gaussian_mixture_market

P_GRID = [0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5]
KAPPA_GRID = [0.0, 0.4]
ML_P_GRID = [0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.5, 2]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def movielens_market(n_users: int = 943, m: int = 200, d: int = 5, n_learners: int = 5,
                     density: float = 0.06, seed: int = 0) -> Market:
    """Ratings in 1..5 from low-rank user and movie factors, a random rated mask."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal((n_users, d - 1)), np.ones((n_users, 1))], axis=1)
    movies = rng.standard_normal((m, d))
    y = np.clip(np.rint(3.5 + x @ movies.T * 0.5 + 0.5 * rng.standard_normal((n_users, m))),
                1, 5)
    w = (rng.random((n_users, m)) < density).astype(float)
    test = rng.random(n_users) < 0.1
    favourite = rng.integers(0, n_learners, n_users)
    dataset = Dataset(x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test],
                      w_train=w[~test], w_test=w[test])
    return Market(dataset, Preferences.from_favourite(favourite[~test], n_learners),
                  Preferences.from_favourite(favourite[test], n_learners), name="ml_shaped")


def setup(shape: str, users: int, steps: int, seeds: int):
    """(market, spec, knobs, init_params) of a benchmark shape."""
    if shape == "census":
        market = gaussian_mixture_market(n_learners=5, n_users=users, dim=15,
                                         test_fraction=0.01, seed=0)
        family = Logistic()
        theta0 = erm_init(market, family, steps=200, eta=0.5)
        spec = EngineSpec(family, n_learners=5, batch_size=150, steps=steps, eval_every=100,
                          probing=ProbingSpec((2,), "preferred", n_probe=100, probe_batch=150))
        knobs = knob_grid(5, seed=range(seeds), p=P_GRID, kappa=KAPPA_GRID, tau=0.7,
                          eta=0.01, lam=1e-9)
        return market, spec, knobs, theta0
    market = movielens_market()
    family = MaskedMultiSquared(n_outputs=200)
    theta0 = erm_init(market, family)
    spec = EngineSpec(family, n_learners=5, batch_size=50, steps=steps, eval_every=500,
                      schedule="inv_sqrt",
                      probing=ProbingSpec((2,), "preferred", n_probe=1000, probe_batch=100))
    knobs = knob_grid(5, seed=range(seeds), p=ML_P_GRID, tau=0.7, eta=5.0, lam=1e-3)
    return market, spec, knobs, theta0


def compile_only(args: argparse.Namespace) -> None:
    """(Subprocess) compile the benchmark's program once and print its compile seconds."""
    from userchoice.engine.simulate import compile_chunk

    market, spec, knobs, theta0 = setup(args.shape, args.users, args.steps, args.seeds)
    started = time.perf_counter()
    compile_chunk(market, spec, knobs, theta0)
    print(json.dumps({"compile_seconds": time.perf_counter() - started}))


def compile_cold_warm(argv: list[str]) -> tuple[float, float]:
    """Compile seconds with an empty persistent cache, then again from it (new processes)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "USERCHOICE_COMPILATION_CACHE": cache}
        seconds = []
        for _ in range(2):
            out = subprocess.run([sys.executable, __file__, *argv, "--compile-only"],
                                 env=env, capture_output=True, text=True, check=True)
            seconds.append(json.loads(out.stdout.strip().splitlines()[-1])["compile_seconds"])
    return seconds[0], seconds[1]


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("census", "movielens"), default="census")
    parser.add_argument("--users", type=int, default=38_500, help="census shape only")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=None, help="15 (census) or 11 (movielens)")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--reference-runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = 15 if args.shape == "census" else 11
    if args.quick:
        args.users, args.steps, args.seeds, args.reference_runs = 4000, 400, 2, 1
    if args.compile_only:
        compile_only(args)
        return {}

    market, spec, knobs, theta0 = setup(args.shape, args.users, args.steps, args.seeds)
    n_runs = knobs.n_runs
    print(f"{args.shape} shape: {market.dataset.n_train} train users, "
          f"d={market.dataset.n_features}, n={spec.n_learners}, B={spec.batch_size}, "
          f"T={spec.steps}; {n_runs} runs", flush=True)

    cold, warm = compile_cold_warm([a for a in argv if a != "--json"])
    print(f"compile:   {cold:8.2f} s cold (empty persistent cache), {warm:.2f} s warm "
          f"(new process, from the cache)", flush=True)

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    result = simulate(market, spec, knobs, init_params=theta0, workers=args.workers)
    cpu_wall = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    engine_s = result.timings["run_seconds"]
    engine_rss = peak_rss_mib()
    print(f"engine:    {engine_s:8.2f} s for {n_runs} runs ({n_runs / engine_s:8.2f} runs/s), "
          f"+ {result.timings['compile_seconds']:.2f} s compile in this process; "
          f"user/wall CPU {cpu_wall:.2f}; peak RSS {engine_rss:.0f} MiB", flush=True)

    ref_runs = min(args.reference_runs, n_runs)
    reference_total = 0.0
    for r in range(ref_runs):
        run = knobs.run(r * (n_runs // ref_runs))
        draws = predraw(market, spec, int(run.seed[0]), theta0)  # inputs, not timed
        started = time.perf_counter()
        run_reference(market, spec, run, draws)
        reference_total += time.perf_counter() - started
    per_run = reference_total / ref_runs
    reference_s = per_run * n_runs
    print(f"reference: {reference_s:8.2f} s for {n_runs} runs ({1 / per_run:8.2f} runs/s), "
          f"scaled from {ref_runs} timed run(s) of {per_run:.2f} s each", flush=True)

    ratio = reference_s / engine_s
    goal = "≥ 100 runs/s and ≥ 100x" if args.shape == "census" else "≥ 50x"
    print(f"ratio:     {ratio:8.1f}x engine over reference (goal {goal} on 2 CPU cores)")
    figures = {"shape": args.shape, "runs": n_runs, "engine_seconds": engine_s,
               "engine_runs_per_second": n_runs / engine_s, "reference_seconds": reference_s,
               "reference_runs_timed": ref_runs, "ratio": ratio, "peak_rss_mib": engine_rss,
               "user_over_wall": cpu_wall, "compile_cold_seconds": cold,
               "compile_warm_seconds": warm}
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
