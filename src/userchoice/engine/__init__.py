"""The streaming engine: MSGD and MSGD-P (SPEC §3–§4), a pure step API and ``simulate``.

- ``spec``: ``EngineSpec`` (static shapes and control flow: one compilation each),
  ``MarketArrays``;
- ``streams``: named random streams and every draw of a step (``predraw`` for the reference);
- ``step``: the public, pure ``init_run`` / ``step`` / ``evaluate`` over pytree state
  (``step_drawn`` / ``step_draws``: a step on given draws, and those draws);
- ``simulate``: those composed under ``lax.scan`` and ``vmap``, compiled once per shape;
- ``driver``: chunk sizes and the one thread pool;
- ``threefry``: JAX's unrolled Threefry lowering on the CPU (same bits, fewer kernels).

Knobs (per run, traced) come from ``userchoice.knobs``; metrics from ``userchoice.metrics``.
"""

from userchoice.engine import threefry
from userchoice.engine.driver import default_chunk_size, default_workers
from userchoice.engine.simulate import SimulationResult, UnknownMetricError, simulate, validate
from userchoice.engine.spec import EngineSpec, MarketArrays, market_arrays, validate_market
from userchoice.engine.step import (
    RunContext,
    RunState,
    evaluate,
    init_run,
    step,
    step_drawn,
    step_draws,
)
from userchoice.engine.streams import RunDraws, RunKeys, StepDraws, predraw, run_keys
from userchoice.knobs import KNOB_DEFAULTS, Knobs, knob_grid, make_knobs, validate_knobs

threefry.unroll_on_cpu()  # at import: before any of our programs is lowered

__all__ = [
    "KNOB_DEFAULTS",
    "EngineSpec",
    "Knobs",
    "MarketArrays",
    "RunContext",
    "RunDraws",
    "RunKeys",
    "RunState",
    "SimulationResult",
    "StepDraws",
    "UnknownMetricError",
    "default_chunk_size",
    "default_workers",
    "evaluate",
    "init_run",
    "knob_grid",
    "make_knobs",
    "market_arrays",
    "predraw",
    "run_keys",
    "simulate",
    "step",
    "step_drawn",
    "step_draws",
    "validate",
    "validate_knobs",
    "validate_market",
]
