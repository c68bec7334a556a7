"""The dry run's time model (``experiments.plan``) against measured simulation time.

For several sweep shapes (the shipped census configs and synthetic markets of other sizes) it
builds the plan, runs the sweep's simulation twice as ``userchoice run`` would (default chunk
sizes, one chunk per core; the first run compiles) and prints the second run's seconds beside
the model's estimate, then the constants a least-squares fit to these measurements gives
(``--fit``), which is how ``plan.STEP_SECONDS`` and ``plan.ELEMENT_SECONDS`` were set.

    python benchmarks/bench_estimate.py           # estimate vs measured
    python benchmarks/bench_estimate.py --fit     # and the fitted constants
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from userchoice.engine import driver, simulate
from userchoice.experiments import plan as plan_module
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.plan import cost_terms, make_plan


def mixture(name: str, users: int, dim: int, n: int, batch: int, steps: int, seeds: int,
            probing: bool = True) -> dict:
    raw = {"name": name, "data": {"dataset": "mixture", "options": {
        "n_users": users, "dim": dim, "test_fraction": 0.2, "seed": 0}},
        "market": {"n_learners": n}, "learner": {"family": "logistic"},
        "engine": {"batch_size": batch, "steps": steps, "eval_every": 100},
        "knobs": {"seed": seeds, "tau": 0.7, "p": [0.0, 0.5], "eta": 0.05}}
    if probing:
        raw["probing"] = {"probers": [0], "source": "preferred", "n_probe": 100,
                          "probe_batch": batch}
    return raw


def cases() -> list:
    from userchoice.reproduce import configs_root

    root = configs_root()
    return [
        ("census_good quick", load_experiment(root / "quick" / "census_good.yaml")),
        ("census_good local", load_experiment(root / "local" / "census_good.yaml")),
        ("census_nn_good local", load_experiment(root / "local" / "census_nn_good.yaml")),
        ("mixture d=4 small", config_from_dict(mixture("m1", 2000, 4, 3, 50, 2000, 8))),
        ("mixture d=64", config_from_dict(mixture("m2", 8000, 64, 5, 150, 1000, 16))),
        ("mixture d=256 n=10", config_from_dict(mixture("m3", 4000, 256, 10, 100, 500, 8))),
    ]


def measure(config) -> dict:
    plan = make_plan(config)
    rows = []
    for group in plan.groups:
        n_runs = len(group.run_ids)
        chunk = driver.default_chunk_size(group.spec, plan.market, n_runs)
        workers = driver.default_workers()
        simulate(plan.market, group.spec, group.knobs, plan.init_params, chunk_size=chunk)
        started = time.perf_counter()
        simulate(plan.market, group.spec, group.knobs, plan.init_params, chunk_size=chunk)
        seconds = time.perf_counter() - started
        waves = math.ceil(len(driver.chunk_bounds(n_runs, chunk)) / workers)
        a, b = cost_terms(group.spec, plan.market.dataset)
        rows.append({"seconds": seconds, "waves": waves, "chunk": chunk,
                     "T": group.spec.steps, "E": len(group.spec.eval_steps), "a": a, "b": b,
                     "estimate": waves * plan_module.estimate_chunk_seconds(
                         group.spec, plan.market.dataset, chunk)})
    return {key: sum(r[key] for r in rows) if key in ("seconds", "estimate") else rows
            for key in ("seconds", "estimate", "groups")} | {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true")
    args = parser.parse_args(argv)
    design, target = [], []
    for label, config in cases():
        out = measure(config)
        print(f"{label:24s} measured {out['seconds']:7.2f} s  estimate {out['estimate']:7.2f} s"
              f"  ratio {out['estimate'] / out['seconds']:5.2f}", flush=True)
        for r in out["rows"]:
            design.append([r["waves"] * r["T"], r["waves"] * r["chunk"]
                           * (r["T"] * r["a"] + r["E"] * r["b"])])
            target.append(r["seconds"])
    if args.fit:  # least squares on relative error (each row divided by its measurement)
        x, y = np.asarray(design, float), np.asarray(target, float)
        coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
        print("fitted STEP_SECONDS, ELEMENT_SECONDS:",
              ", ".join(f"{c:.3g}" for c in coef))


if __name__ == "__main__":
    main()
