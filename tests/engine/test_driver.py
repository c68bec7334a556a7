"""The driver's chunk sizes: memory-bounded everywhere; on CPU cache-bounded (one step's
arrays of a chunk fit a core's L2), at least one chunk per worker, balanced."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from userchoice.engine import EngineSpec, driver
from userchoice.engine.spec import bytes_per_run, step_bytes_per_run
from userchoice.families import MLP, Logistic
from userchoice.probing import ProbingSpec
from userchoice.synthetic import gaussian_mixture_market

MARKET = gaussian_mixture_market(n_learners=3, n_users=300, dim=4, seed=0)


def _spec(hidden: int | None, batch: int, probing: bool) -> EngineSpec:
    return EngineSpec(Logistic() if hidden is None else MLP(hidden=hidden), n_learners=3,
                      batch_size=batch, steps=10, eval_every=5,
                      probing=ProbingSpec((1,), "preferred", n_probe=20, probe_batch=10)
                      if probing else None)


def _on_cpu_with_l2(patch: pytest.MonkeyPatch, size: int) -> None:
    patch.setattr(driver, "l2_cache_bytes", lambda: size)
    patch.setattr(driver.jax, "default_backend", lambda: "cpu")


@settings(max_examples=60, deadline=None)
@given(hidden=st.sampled_from([None, 8, 64, 512]), batch=st.integers(1, 400),
       probing=st.booleans(), n_runs=st.integers(1, 1000), workers=st.integers(1, 8),
       l2=st.sampled_from([2**16, 2**20, 2**22]))
@example(hidden=None, batch=1, probing=False, n_runs=4, workers=3, l2=2**16)  # no even split
def test_cpu_chunks_fit_the_cache_cover_the_workers_and_are_balanced(
        hidden, batch, probing, n_runs, workers, l2):
    spec = _spec(hidden, batch, probing)
    with pytest.MonkeyPatch.context() as patch:
        _on_cpu_with_l2(patch, l2)
        chunk = driver.default_chunk_size(spec, MARKET, n_runs, workers)
    n_chunks = -(-n_runs // chunk)
    step = step_bytes_per_run(spec, MARKET)
    assert 1 <= chunk <= min(n_runs, driver.CPU_MAX_CHUNK_RUNS)
    assert chunk == 1 or chunk * step <= l2  # one step of the chunk stays in L2
    assert n_chunks >= min(n_runs, workers)  # every worker gets a chunk
    assert n_chunks * chunk - n_runs < n_chunks  # the last chunk needs little padding
    # an even split into the chunks the cache and the workers ask for, smaller only when an
    # even split cannot make that many (4 runs, 3 workers: chunks of 1)
    cap = min(max(1, l2 // step), driver.CPU_MAX_CHUNK_RUNS)
    fewest = max(min(n_runs, workers), -(-n_runs // cap))
    even = -(-n_runs // fewest)
    assert n_chunks >= fewest and chunk <= even
    assert chunk == even or -(-n_runs // (chunk + 1)) < fewest


def test_step_bytes_count_the_learners_their_copies_and_the_probe_batch():
    spec = _spec(64, 50, probing=True)
    assert step_bytes_per_run(spec, MARKET) == (50 * 3 * 2 + 1 * 10) * 64 * 4
    alone = _spec(64, 50, probing=False)
    alone = EngineSpec(alone.family, n_learners=3, batch_size=50, steps=10, eval_every=5,
                       update_all=False)
    assert step_bytes_per_run(alone, MARKET) == 50 * 3 * 64 * 4


def test_the_memory_budget_still_bounds_a_chunk(monkeypatch):
    spec = _spec(None, 20, probing=False)
    _on_cpu_with_l2(monkeypatch, 2**30)
    monkeypatch.setenv(driver.CHUNK_BYTES_ENV, str(5 * bytes_per_run(spec, MARKET)))
    assert driver.default_chunk_size(spec, MARKET, 100, workers=1) == 5


def test_l2_size_is_read_from_sysfs_or_defaults(tmp_path, monkeypatch):
    cache = tmp_path / "cpu0" / "cache"
    for index, (level, size) in enumerate([("1", "48K"), ("2", "512K"), ("3", "32768K")]):
        (cache / f"index{index}").mkdir(parents=True)
        (cache / f"index{index}" / "level").write_text(level + "\n")
        (cache / f"index{index}" / "size").write_text(size + "\n")
    monkeypatch.setattr(driver, "CPU_CACHE_SYSFS", cache)
    assert driver.l2_cache_bytes() == 512 * 2**10
    monkeypatch.setattr(driver, "CPU_CACHE_SYSFS", tmp_path / "missing")
    assert driver.l2_cache_bytes() == driver.DEFAULT_L2_BYTES
