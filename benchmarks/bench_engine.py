"""Engine vs the NumPy reference loop on a census-shaped market.

Census shape (SPEC §7): ≈38k training users, d = 16, n = 5, B = 150, T = 4000, N_probe = 100,
P = 150, prober {2}, evaluation every 100 steps; 240 runs = 15 seeds × 16 (p, κ) points.
The reference runs one run at a time; timing all 240 takes long, so it times
``--reference-runs`` of them and scales (it says so). Prints seconds, runs/s, peak memory and
the speed ratio, both measured in this process.

    python benchmarks/bench_engine.py            # full benchmark
    python benchmarks/bench_engine.py --quick    # small smoke version
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from userchoice.engine import EngineSpec, knob_grid, predraw, simulate
from userchoice.families import Logistic
from userchoice.fitting import erm_init
from userchoice.probing import ProbingSpec
from userchoice.reference import run_reference
from userchoice.synthetic import gaussian_mixture_market

P_GRID = [0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5]
KAPPA_GRID = [0.0, 0.4]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=38_500)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--reference-runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.steps, args.seeds, args.reference_runs = 4000, 400, 2, 1

    market = gaussian_mixture_market(n_learners=5, n_users=args.users, dim=15,
                                     test_fraction=0.01, seed=0)
    family = Logistic()
    theta0 = erm_init(market, family, steps=200, eta=0.5)
    spec = EngineSpec(family, n_learners=5, batch_size=150, steps=args.steps, eval_every=100,
                      probing=ProbingSpec((2,), "preferred", n_probe=100, probe_batch=150))
    knobs = knob_grid(5, seed=range(args.seeds), p=P_GRID, kappa=KAPPA_GRID, tau=0.7,
                      eta=0.01, lam=1e-9)
    n_runs = knobs.n_runs
    print(f"market: {market.dataset.n_train} train users, d={market.dataset.n_features}, n=5; "
          f"T={args.steps}, B=150, N_probe=100, P=150; {n_runs} runs", flush=True)

    result = simulate(market, spec, knobs, init_params=theta0)
    engine_s = result.timings["run_seconds"]
    compile_s = result.timings["compile_seconds"]
    engine_rss = peak_rss_mib()
    print(f"engine:    {engine_s:8.2f} s for {n_runs} runs ({n_runs / engine_s:8.2f} runs/s), "
          f"+ {compile_s:.2f} s compile; peak RSS {engine_rss:.0f} MiB", flush=True)

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
    print(f"ratio:     {ratio:8.1f}x engine over reference (goal >= 30x on 2 CPU cores)")
    figures = {"runs": n_runs, "engine_seconds": engine_s, "compile_seconds": compile_s,
               "engine_runs_per_second": n_runs / engine_s, "reference_seconds": reference_s,
               "reference_runs_timed": ref_runs, "ratio": ratio, "peak_rss_mib": engine_rss}
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
