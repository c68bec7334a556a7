"""Threefry on the CPU without a rolled loop: the same bits, a few times fewer operations.

On the CPU, JAX lowers each ``threefry2x32`` (every ``fold_in``, ``split`` and ``bits``) as a
5-iteration ``while`` loop, which keeps compiled programs small. Inside our step that is six
loops per step, each iteration three tiny kernels plus 13 copies of the loop state: 480 of the
≈ 550 kernels in a census step's loop body (≈ 30 once unrolled, counted in the optimised
HLO). Every other platform already gets the unrolled form, whose arithmetic is the same 20
rounds, so the bits do not change (the known-answer test in tests/engine/test_threefry.py
checks it) and neither does any run id.

JAX has no public switch for this, so ``unroll_on_cpu`` registers JAX's own unrolled lowering
for the CPU; if JAX's internals move, it leaves JAX as it is (only slower) and says why in
``STATUS``. ``USERCHOICE_ROLLED_THREEFRY=1`` keeps JAX's default.
"""

from __future__ import annotations

import functools
import os

STATUS = "not applied"


@functools.cache
def unroll_on_cpu() -> str:
    """Register the unrolled Threefry lowering for the CPU (once); returns ``STATUS``."""
    global STATUS
    if os.environ.get("USERCHOICE_ROLLED_THREEFRY", "") not in ("", "0"):
        STATUS = "off (USERCHOICE_ROLLED_THREEFRY is set)"
        return STATUS
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as impl

        rule = mlir.lower_fun(functools.partial(impl._threefry2x32_lowering,
                                                use_rolled_loops=False),
                              multiple_results=True)
        mlir.register_lowering(impl.threefry2x32_p, rule, platform="cpu")
    except (ImportError, AttributeError, TypeError) as error:  # JAX moved its internals
        STATUS = f"not applied ({type(error).__name__}: {error})"
    else:
        STATUS = "applied"
    return STATUS
