"""Population dynamics at the size of Dean et al.'s experiment (b) (NEIGHBOURS §B).

- plain: 50 quadratic groups φ_j ~ N(0, I₈) (default_rng(0)), β = 1, 2 learners, exact
  retraining, ε = 0.1, T = 1500 rounds with the stop rule (consecutive, patience 20),
  evaluation every 10 rounds; 10⁴ runs, each from its own jittered even split (α ∝ 1 + 1e-4·U,
  ``default_rng(run)``), so runs settle at different rounds. Goal: 10⁴ runs in under a minute
  on 2 CPU cores.
- entry: the same with market entry (the largest-share learner splits after each phase) up to
  20 learners: 19 phases of up to 1500 rounds; fewer runs (``--entry-runs``).
- logistic: logistic groups from the shipped ACS sample (ACSEmployment, Alabama 2017: 4,950
  training rows, 16 standardised features, labels in {0, 1}), one group per RAC1P (merged below
  30 rows: 6 groups), ridge 1e-4; 3 learners, exact retraining by Newton's method, ε = 0.1,
  T = 1500 with the stop rule, each run from α ∝ 1 + U[0, 1) (``default_rng(run)``: the
  logistic risks are small, so a 1e-4 jitter would take long to grow); ``--logistic-runs``,
  default 1,000.

Metrics: every population metric but the allocation (at [runs, evals, learners, groups] it is
the one output too large to keep for 10⁴ runs). Printed: seconds, runs/s, rounds reached,
user/wall CPU, peak RSS, and compile time cold (an empty persistent compilation cache, in a
fresh process) and in this process.

    python benchmarks/bench_population.py                 # both, full size
    python benchmarks/bench_population.py --quick         # small smoke version
    python benchmarks/bench_population.py --cases logistic
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
from importlib.resources import files

import numpy as np

from userchoice.knobs import make_knobs
from userchoice.population import (
    PopulationSpec,
    compile_population,
    gaussian_groups,
    groups_from_dataset,
    initial_allocation,
    simulate_population,
)

METRICS = ("total_risk", "average_risk", "segmentation", "n_learners", "share",
           "learner_risk", "group_risk", "relative_excess_risk")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def acs_logistic_groups():
    from userchoice.data.census import load_census

    sample = files("userchoice") / "samples" / "acs_2017_1yr_person_AL_sample5000.csv.gz"
    dataset = load_census(str(sample), task="ACSEmployment", dtype=np.float64)
    return groups_from_dataset(dataset, "RAC1P", loss="logistic")


def setup(case: str, runs: int, steps: int):
    """(groups, spec, knobs, allocation [R, n, G]) of a benchmark case."""
    if case == "logistic":
        groups = acs_logistic_groups()
        spec = PopulationSpec(n_learners=3, steps=steps, eval_every=10, metrics=METRICS)
        knobs = make_knobs(3, epsilon=0.1, seed=list(range(runs)))
        allocation = np.stack([initial_allocation("jitter", 3, groups.n_groups, seed=r,
                                                  scale=1.0) for r in range(runs)])
        return groups, spec, knobs, allocation
    groups = gaussian_groups(50, 8, seed=0)
    entry = {"max_learners": 20, "entry": "largest"} if case == "entry" else {}
    spec = PopulationSpec(n_learners=2, steps=steps, eval_every=10, metrics=METRICS, **entry)
    knobs = make_knobs(spec.max_n, epsilon=0.1, seed=list(range(runs)))
    allocation = np.stack([initial_allocation("jitter", 2, 50, seed=r, scale=1e-4)
                           for r in range(runs)])
    return groups, spec, knobs, allocation


def compile_only(args: argparse.Namespace) -> None:
    """(Subprocess) compile one case's programs once and print the seconds."""
    groups, spec, knobs, allocation = setup(args.case, args.runs, args.steps)
    print(json.dumps({"compile_seconds": compile_population(groups, spec, knobs, allocation)}))


def compile_cold(case: str, runs: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "USERCHOICE_COMPILATION_CACHE": cache}
        out = subprocess.run([sys.executable, __file__, "--compile-only", "--case", case,
                              "--runs", str(runs), "--steps", str(steps)], env=env,
                             capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["compile_seconds"])


def bench(case: str, runs: int, steps: int, workers: int | None) -> dict:
    groups, spec, knobs, allocation = setup(case, runs, steps)
    cold = compile_cold(case, runs, steps)  # the same programs (batch shape aside)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    result = simulate_population(groups, spec, knobs, allocation, workers=workers)
    wall = time.perf_counter() - wall0
    cpu_wall = (cpu_seconds() - cpu0) / wall
    seconds = result.timings["run_seconds"]
    phases = result.phase_end >= 0
    figures = {
        "case": case, "runs": runs, "learners": spec.max_n, "phases": spec.n_phases,
        "steps_per_phase": steps, "seconds": seconds, "runs_per_second": runs / seconds,
        "compile_seconds": result.timings["compile_seconds"], "compile_cold_seconds": cold,
        "wall_seconds": wall, "user_over_wall": cpu_wall, "peak_rss_mib": peak_rss_mib(),
        "chunk_size": result.timings["chunk_size"], "workers": result.timings["workers"],
        "max_round": result.timings["max_round"],
        "mean_last_round": float(np.mean(result.phase_end.max(axis=1))),
        "converged_share": float(result.converged[phases].mean()),
        "final_total_risk": float(np.mean(result.metrics["total_risk"][:, -1]))}
    print(f"{case:8s}: {runs} runs × {spec.n_phases} phase(s) ≤ {steps} rounds, "
          f"{spec.max_n} learners: {seconds:7.2f} s ({runs / seconds:9.1f} runs/s), compile "
          f"{figures['compile_seconds']:.2f} s here / {cold:.2f} s cold; rounds reached "
          f"≤ {figures['max_round']} (mean {figures['mean_last_round']:.0f}); phases "
          f"converged {100 * figures['converged_share']:.0f} %; user/wall CPU {cpu_wall:.2f}; "
          f"peak RSS {figures['peak_rss_mib']:.0f} MiB", flush=True)
    return figures


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs without entry")
    parser.add_argument("--entry-runs", type=int, default=500, help="runs with entry to 20")
    parser.add_argument("--logistic-runs", type=int, default=1_000,
                        help="runs on logistic ACS groups")
    parser.add_argument("--cases", default="plain,entry,logistic",
                        help="comma-separated cases to run")
    parser.add_argument("--steps", type=int, default=1500, help="round budget per phase")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="plain", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compile_only:
        compile_only(args)
        return []
    if args.quick:
        args.runs, args.entry_runs, args.logistic_runs, args.steps = 200, 20, 20, 300
    runs = {"plain": args.runs, "entry": args.entry_runs, "logistic": args.logistic_runs}
    cases = args.cases.split(",")
    unknown = sorted(set(cases) - set(runs))
    if unknown:
        parser.error(f"--cases: unknown {unknown}; allowed {sorted(runs)}")
    out = [bench(case, runs[case], args.steps, args.workers) for case in cases]
    if "plain" in cases:
        goal = out[cases.index("plain")]["seconds"] < 60 * args.runs / 10_000
        print(f"goal (10⁴ plain runs in < 60 s on 2 cores): {'met' if goal else 'NOT met'}")
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
