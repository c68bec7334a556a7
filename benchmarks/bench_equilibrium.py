"""The share-competition equilibrium (Jagadeesan et al.; NEIGHBOURS §C) on setting 2: a sweep
over σ × m × seeds at the paper's sizes (10,000 points, c = 0.3, T = 0.1, best responses of
5,000 steps at lr 0.1, tol 1e-3, ≤ 100 rounds).

Each m is one compiled program (the σ × seeds runs differ only by their data and seeds: per-run
data of one shape). Printed per m: compile seconds cold (an empty persistent compilation cache)
and warm (the same program again in a new process, from that cache), each in a fresh
subprocess; the sweep's seconds and runs/s on ``--workers`` (default: one per core), user/wall
CPU (2 workers on 2 cores should give ≈ 2), rounds and the share of runs that converged; and
the social loss next to the Bayes risk per σ (the paper's setting-2 curves: with m ≥ 3 the
social loss can fall below the Bayes risk as σ grows).

    python benchmarks/bench_equilibrium.py            # σ ∈ 8 values × m ∈ {2, 3, 4} × 3 seeds
    python benchmarks/bench_equilibrium.py --quick    # small smoke version
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

from userchoice.equilibrium import (
    EquilibriumSpec,
    compile_equilibrium,
    paper_knobs,
    setting2,
    simulate_equilibrium,
    stack_data,
)

SIGMAS = [0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
PROVIDERS = [2, 3, 4]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def setup(m: int, sigmas: list[float], seeds: int, points: int, steps: int):
    """(data, spec, knobs) of one m: runs ordered σ-major, seeds fastest."""
    data = stack_data([setting2(s, n_points=points, seed=seed) for s in sigmas
                       for seed in range(seeds)])
    spec = EquilibriumSpec(m, steps=steps)
    knobs = paper_knobs(m, seed=[seed for _ in sigmas for seed in range(seeds)])
    return data, spec, knobs


def compile_only(args: argparse.Namespace) -> None:
    """(Subprocess) compile one m's programs once and print the seconds."""
    data, spec, knobs = setup(args.m[0], args.sigmas, args.seeds, args.points, args.steps)
    print(json.dumps({"compile_seconds": compile_equilibrium(data, spec, knobs)}))


def compile_cold_warm(argv: list[str], m: int) -> tuple[float, float]:
    """Compile seconds with an empty persistent cache, then again from it (new processes)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "USERCHOICE_COMPILATION_CACHE": cache}
        seconds = []
        for _ in range(2):
            out = subprocess.run([sys.executable, __file__, *argv, "--m", str(m),
                                  "--compile-only"], env=env, capture_output=True, text=True,
                                 check=True)
            seconds.append(json.loads(out.stdout.strip().splitlines()[-1])["compile_seconds"])
    return seconds[0], seconds[1]


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, nargs="+", default=PROVIDERS, help="providers")
    parser.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.m, args.sigmas, args.seeds, args.points, args.steps = [2, 3], [0.5, 2.0], 2, 1000, 500
    if args.compile_only:
        compile_only(args)
        return {}
    shared = ["--sigmas", *map(str, args.sigmas), "--seeds", str(args.seeds), "--points",
              str(args.points), "--steps", str(args.steps)]  # the sizes, --quick resolved
    print(f"setting 2: {args.points} points, {args.steps} steps per best response; "
          f"σ ∈ {args.sigmas} × {args.seeds} seeds per m", flush=True)
    figures: dict = {"points": args.points, "steps": args.steps, "per_m": {}}
    total_runs, total_seconds = 0, 0.0
    for m in args.m:
        cold, warm = compile_cold_warm(shared, m)
        data, spec, knobs = setup(m, args.sigmas, args.seeds, args.points, args.steps)
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        result = simulate_equilibrium(data, spec, knobs, workers=args.workers)
        cpu_wall = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
        seconds = result.timings["run_seconds"]
        n = knobs.n_runs
        total_runs, total_seconds = total_runs + n, total_seconds + seconds
        social = result.metrics["social_loss"].reshape(len(args.sigmas), args.seeds).mean(1)
        bayes = result.metrics["bayes_risk"].reshape(len(args.sigmas), args.seeds).mean(1)
        print(f"m = {m}: compile {cold:6.2f} s cold, {warm:.2f} s warm; {n} runs in "
              f"{seconds:7.2f} s ({n / seconds:6.3f} runs/s), user/wall CPU {cpu_wall:.2f}; "
              f"rounds mean {result.rounds.mean():.1f} (max {result.rounds.max()}), converged "
              f"{result.converged.mean():.0%}", flush=True)
        print("         σ: " + " ".join(f"{s:6.2f}" for s in args.sigmas))
        print("    social: " + " ".join(f"{v:6.3f}" for v in social))
        print("     Bayes: " + " ".join(f"{v:6.3f}" for v in bayes), flush=True)
        figures["per_m"][m] = {
            "runs": n, "run_seconds": seconds, "runs_per_second": n / seconds,
            "compile_cold_seconds": cold, "compile_warm_seconds": warm,
            "user_over_wall": cpu_wall, "rounds_mean": float(result.rounds.mean()),
            "converged": float(result.converged.mean()),
            "social_loss": social.tolist(), "bayes_risk": bayes.tolist()}
    figures["runs_per_second"] = total_runs / total_seconds
    print(f"all: {total_runs} runs in {total_seconds:.2f} s ({total_runs / total_seconds:.3f} "
          f"runs/s) after compilation")
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
