"""Randomness: a run's seed → named streams → every draw of every step.

``seed`` → ``key(seed)``, split into named streams by ``fold_in`` (init, probe sets, arrivals,
choices, probe batches), and each step folds in its index, so a step's draws are a pure function
of (seed, t): identical alone or in any batch. ``predraw`` materialises them for the NumPy
reference and for audits.

One-pass arrivals spend no bits per step: ``stream`` takes users t·B … t·B + B − 1 of the
training split, ``shuffle`` the same positions of one permutation per run (``arrival_order``,
drawn once from the arrival stream's key; only ``uniform`` arrival folds steps into it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.engine.spec import EngineSpec
from userchoice.families import Params
from userchoice.market import Market
from userchoice.probing import ProbeDraws, draw_probe_sets


class RunKeys(NamedTuple):
    init: jax.Array
    probe_set: jax.Array
    arrival: jax.Array
    choice: jax.Array
    probe_batch: jax.Array


def fold_in_each(keys: list[jax.Array], data: jax.Array | int) -> list[jax.Array]:
    """``[fold_in(k, data) for k in keys]`` as one vectorised hash: the same keys (vmap
    computes each element alone), but one Threefry kernel for XLA to compile instead of one
    per key — the hashes were most of the compile time of our programs on the CPU."""
    if len(keys) < 2:
        return [jax.random.fold_in(k, data) for k in keys]
    folded = jax.vmap(jax.random.fold_in, in_axes=(0, None))(jnp.stack(keys), data)
    return list(folded)


def run_keys(seed: jax.Array) -> RunKeys:
    """Named streams, ``fold_in(key(seed), i)`` in RunKeys field order (init 0 … probe_batch 4).

    Renumbering them would change every run's numbers.
    """
    key = jax.random.key(seed)
    streams = jnp.arange(len(RunKeys._fields), dtype=jnp.uint32)
    return RunKeys(*jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, streams))


def uniform_indices(key: jax.Array, shape: tuple[int, ...], n: int | jax.Array) -> jax.Array:
    """Indices in [0, n) from one 32-bit word each (``randint`` spends two).

    The modulo bias is below n/2³² relative (1e-5 for 40k users), far below sampling noise.
    """
    bits = jax.random.bits(key, shape, jnp.uint32)
    return (bits % jnp.asarray(n, jnp.uint32)).astype(jnp.int32)


def draw_init(spec: EngineSpec, key: jax.Array, n_learners: int, n_features: int,
              dtype: Any) -> Params:
    """Θ⁰ from the run's init stream: the family's random init (``spec.init == "family"``),
    or U[0, 1) for every leaf of the family's parameter pytree (``"uniform"``; one key per
    leaf, the stream's own key when there is one leaf)."""
    def family_init(k: jax.Array) -> Params:
        return spec.family.init(k, n_learners, n_features, dtype)

    if spec.init == "family":
        return family_init(key)
    shapes = jax.eval_shape(family_init, key)
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    keys = [key] if len(leaves) == 1 else list(jax.random.split(key, len(leaves)))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.uniform(k, leaf.shape, dtype) for k, leaf in
                  zip(keys, leaves, strict=True)])


def arrival_order(spec: EngineSpec, keys: RunKeys, n_train: int) -> jax.Array | None:
    """The run's order of training users for ``arrival="shuffle"`` ([n_train] int32, a
    permutation from the arrival stream); None for the other arrivals."""
    if spec.arrival != "shuffle":
        return None
    return jax.random.permutation(keys.arrival, n_train).astype(jnp.int32)


class StepDraws(NamedTuple):
    batch: jax.Array  # [B] training-user indices
    choice: Any  # the choice rule's draws (ChoiceDraws for the built-in rules)
    probe: jax.Array | None  # [|S|, P] probe-set indices


def draw_step(spec: EngineSpec, keys: RunKeys, t: jax.Array, n_train: int,
              order: jax.Array | None = None) -> StepDraws:
    """All randomness step ``t`` consumes; a pure function of (keys, t) (and of the run's
    ``order``, ``arrival_order``, for ``arrival="shuffle"``)."""
    dtype = jnp.dtype(spec.dtype)
    streams = {"choice": keys.choice}
    if spec.arrival == "uniform":
        streams["arrival"] = keys.arrival
    if spec.probing is not None:
        streams["probe_batch"] = keys.probe_batch
    step_keys = dict(zip(streams, fold_in_each(list(streams.values()), t), strict=True))
    if spec.arrival == "uniform":
        batch = uniform_indices(step_keys["arrival"], (spec.batch_size,), n_train)
    else:
        position = jnp.asarray(t, jnp.int32) * spec.batch_size + jnp.arange(
            spec.batch_size, dtype=jnp.int32)
        if spec.arrival == "stream":
            batch = position
        elif order is None:
            raise ValueError("arrival='shuffle' needs the run's order (arrival_order)")
        else:
            batch = order[position]
    choice = spec.choice_rule.draw(step_keys["choice"], spec.batch_size, spec.n_learners, dtype)
    probe = None
    if spec.probing is not None:
        probe = uniform_indices(step_keys["probe_batch"],
                                (spec.n_probers, spec.probing.probe_batch), spec.probing.n_probe)
    return StepDraws(batch, choice, probe)


class RunDraws(NamedTuple):
    """Every random input of one run, materialised (for the NumPy reference and for audits)."""

    theta0: Params
    probe: ProbeDraws | None
    steps: StepDraws  # each field stacked over steps: [T, ...]


def predraw(market: Market, spec: EngineSpec, seed: int, init_params: Params | None = None
            ) -> RunDraws:
    """The exact random inputs the engine consumes for ``seed`` (same functions, same keys)."""
    with jax.enable_x64(spec.dtype == "float64"):
        dtype = jnp.dtype(spec.dtype)
        keys = run_keys(jnp.asarray(seed, jnp.int32))
        n_train = market.dataset.n_train
        if init_params is None:
            theta0 = draw_init(spec, keys.init, spec.n_learners, market.dataset.n_features,
                               dtype)
        else:
            theta0 = init_params
        probe = None
        if spec.probing is not None:
            probe = draw_probe_sets(keys.probe_set, spec.probing, n_train, dtype)
        ts = jnp.arange(spec.steps, dtype=jnp.int32)
        order = arrival_order(spec, keys, n_train)
        steps = jax.jit(jax.vmap(lambda t: draw_step(spec, keys, t, n_train, order)))(ts)
        return jax.tree_util.tree_map(np.asarray, RunDraws(theta0, probe, steps))
