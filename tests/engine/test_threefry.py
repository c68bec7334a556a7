"""The unrolled Threefry lowering: active on the CPU, and bit-for-bit Threefry-2x32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from userchoice.engine import threefry

# Known-answer vectors of Threefry-2x32, 20 rounds (Random123's kat_vectors): key, counter → out.
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def test_the_unrolled_lowering_is_applied_on_this_jax():
    assert threefry.unroll_on_cpu() == "applied", threefry.STATUS


@pytest.mark.parametrize(("key", "count", "expected"), KAT)
def test_compiled_threefry_gives_the_known_answers(key, count, expected):
    out = jax.jit(threefry_2x32)(jnp.asarray(key, jnp.uint32), jnp.asarray(count, jnp.uint32))
    assert [int(v) for v in np.asarray(out)] == list(expected)


def test_a_compiled_draw_has_no_rolled_loop():
    # JAX's rolled CPU lowering is one while loop per threefry call (fold_in, bits); ours none.
    def draws(seed):
        key = jax.random.fold_in(jax.random.key(seed), 3)
        return jax.random.bits(key, (150,), jnp.uint32)

    text = jax.jit(draws).lower(jnp.int32(1)).as_text()
    assert "xor" in text  # the hash is in the program, inline
    assert "while" not in text
