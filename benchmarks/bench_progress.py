"""Overhead of the engine's progress (``simulate(step_progress=...)``).

A chunk runs as ``simulate.SEGMENTS`` calls of one program (segments of evaluation points), and
progress is reported between the calls. This times the same sweep in one call per chunk
(``SEGMENTS = 1``, no progress) and segmented with progress (the default), alternating, in one
process (both programs compiled first, outside the timings), and prints the median and the
fastest simulation seconds of each and the overhead, in wall time and in CPU time of this
process (all its threads): on a shared machine other processes stretch wall time, CPU time
less. Default: the shipped census_good config (``local`` set).

    python benchmarks/bench_progress.py                      # census_good, 3 repeats
    python benchmarks/bench_progress.py CONFIG --repeats 5 --set knobs.seed=4
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

from userchoice.engine import simulate
from userchoice.engine.driver import default_chunk_size
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.plan import make_plan


def default_config() -> str:
    from userchoice.reproduce import configs_root

    return str(configs_root() / "local" / "census_good.yaml")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    plan = make_plan(load_experiment(args.config or default_config(), args.overrides))
    group = plan.groups[0]
    chunk = default_chunk_size(group.spec, plan.market, len(group.run_ids))
    calls = []
    engine = importlib.import_module("userchoice.engine.simulate")
    segments = engine.SEGMENTS

    def once(segmented: bool) -> tuple[float, float]:
        engine.SEGMENTS = segments if segmented else 1
        started, cpu = time.perf_counter(), time.process_time()
        result = simulate(plan.market, group.spec, group.knobs, plan.init_params,
                          chunk_size=chunk,
                          step_progress=(lambda d, t: calls.append(d)) if segmented else None)
        assert result.timings["compile_seconds"] < 1.0, "not compiled before timing"
        return time.perf_counter() - started, time.process_time() - cpu

    # compile both programs outside the timings (a one-run sweep of each would compile
    # another chunk shape, so compile by running the real thing once)
    print(f"{plan.config.name}: {group.knobs.n_runs} runs, T = {group.spec.steps}, "
          f"{len(group.spec.eval_steps)} evaluation points, chunks of {chunk}", flush=True)
    for segmented in (False, True):
        engine.SEGMENTS = segments if segmented else 1
        simulate(plan.market, group.spec, group.knobs.take(range(chunk)), plan.init_params,
                 chunk_size=chunk, step_progress=(lambda d, t: None) if segmented else None)
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.repeats):
        for segmented in ((False, True) if r % 2 == 0 else (True, False)):  # alternate the order
            wall, used = once(segmented)
            times[segmented].append(wall)
            cpu[segmented].append(used)
            print(f"  repeat {r + 1}: {'with' if segmented else 'without'} progress {wall:.2f} s "
                  f"(CPU {used:.2f} s)", flush=True)
    out = {"reports_per_sweep": len(calls) // args.repeats}
    for label, series in (("wall", times), ("CPU", cpu)):
        without, with_ = statistics.median(series[False]), statistics.median(series[True])
        best = min(series[True]) / min(series[False]) - 1  # the least disturbed of each
        out[label] = {"median_overhead": with_ / without - 1, "fastest_overhead": best}
        print(f"{label:4s} median: without {without:.2f} s, with {with_:.2f} s: overhead "
              f"{with_ / without - 1:+.1%}; fastest of each: {min(series[False]):.2f} s vs "
              f"{min(series[True]):.2f} s ({best:+.1%})")
    print(f"{out['reports_per_sweep']} progress reports per sweep")
    return out


if __name__ == "__main__":
    main()
