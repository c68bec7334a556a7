"""The run's random streams: vectorised hashing gives the keys and draws one call per key
would (so no run's numbers change when draws are batched to compile fewer kernels)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice.engine.streams import RunKeys, fold_in_each, run_keys
from userchoice.probing import ProbingSpec, draw_probe_sets

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _bits(key: jax.Array) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


@settings(max_examples=25, deadline=None)
@given(seed=seeds, t=st.integers(min_value=0, max_value=2**31 - 1))
def test_run_keys_and_step_keys_are_one_fold_in_per_stream(seed, t):
    keys = run_keys(jnp.int32(seed))
    base = jax.random.key(jnp.int32(seed))
    for index, name in enumerate(RunKeys._fields):  # stream i is fold_in(key(seed), i)
        np.testing.assert_array_equal(_bits(getattr(keys, name)),
                                      _bits(jax.random.fold_in(base, index)))
    streams = [keys.arrival, keys.choice, keys.probe_batch]
    folded = jax.jit(fold_in_each)(streams, jnp.int32(t))
    for key, got in zip(streams, folded, strict=True):
        np.testing.assert_array_equal(_bits(got), _bits(jax.random.fold_in(key, jnp.int32(t))))
    (single,) = fold_in_each(streams[:1], t)
    np.testing.assert_array_equal(_bits(single), _bits(folded[0]))


@settings(max_examples=10, deadline=None)
@given(seed=seeds)
def test_probe_set_draws_are_the_split_keys_own_draws(seed):
    spec = ProbingSpec((0, 2), "preferred", n_probe=7, probe_batch=3)
    key = jax.random.key(seed)
    draws = draw_probe_sets(key, spec, 50, jnp.float32)
    k_users, k_coin, k_pick = jax.random.split(key, 3)
    np.testing.assert_array_equal(
        draws.users, jax.random.randint(k_users, (2, 7), 0, 50, dtype=jnp.int32))
    np.testing.assert_array_equal(draws.noise_coin, jax.random.uniform(k_coin, (2, 7)))
    np.testing.assert_array_equal(draws.noise_pick, jax.random.uniform(k_pick, (2, 7)))
