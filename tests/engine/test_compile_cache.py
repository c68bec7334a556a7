"""The persistent compilation cache: on by default, in the folder $USERCHOICE_COMPILATION_CACHE
names, off when it says so; a second process loads the program instead of compiling it."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from userchoice.engine import compile_cache

# One small simulate in a fresh process; prints the cache events JAX reported and the folder.
SCRIPT = """
import json, jax, jax.monitoring as monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
from userchoice.engine import EngineSpec, knob_grid, simulate
from userchoice.families import Squared
from userchoice.theory import trap_market
spec = EngineSpec(Squared(), n_learners=2, batch_size=10, steps=20, eval_every=10)
simulate(trap_market(gap=2.0, n_users=200), spec, knob_grid(2, seed=range(2), eta=0.01))
print(json.dumps({"hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses"),
                  "dir": jax.config.jax_compilation_cache_dir}))
"""


def _run(env_value: str | None, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != compile_cache.ENV}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    if env_value is not None:
        env[compile_cache.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_program_from_the_cache(tmp_path):
    folder = tmp_path / "jax-cache"
    first = _run(str(folder), tmp_path)
    assert first["dir"] == str(folder) and first["misses"] >= 1 and first["hits"] == 0
    assert any(folder.iterdir())
    second = _run(str(folder), tmp_path)
    assert second["hits"] >= 1 and second["misses"] == 0


def test_default_folder_is_the_user_cache_dir_and_off_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    assert compile_cache.cache_dir() == tmp_path / "cache" / "userchoice" / "jax"
    for value in ("0", "off", "False", " no "):
        monkeypatch.setenv(compile_cache.ENV, value)
        assert compile_cache.cache_dir() is None
    monkeypatch.setenv(compile_cache.ENV, "~/elsewhere")
    assert compile_cache.cache_dir() == Path("~/elsewhere").expanduser()


def test_off_means_no_cache_and_no_folder(tmp_path):
    off = _run("off", tmp_path)
    assert off["dir"] in (None, "") and off["hits"] == 0
    assert not (tmp_path / "cache" / "userchoice").exists()


# ----------------------------------------------------------------- in-memory program cache


def test_program_cache_evicts_the_least_recently_used_beyond_its_size():
    programs = compile_cache.ProgramCache(maxsize=2)
    builds: list[str] = []

    def build(key):
        return lambda: builds.append(key) or key.upper()

    assert programs.get("a", build("a")) == "A"
    assert programs.get("b", build("b")) == "B"
    assert programs.get("a", build("a")) == "A"  # a hit: a is now the most recent
    programs.get("c", build("c"))  # evicts b, the least recently used
    assert programs.keys() == ["a", "c"] and builds == ["a", "b", "c"]
    programs.get("b", build("b"))  # built again
    assert builds == ["a", "b", "c", "b"] and programs.keys() == ["c", "b"]


def test_program_cache_builds_a_key_once_across_threads():
    programs = compile_cache.ProgramCache(maxsize=4)
    builds = []
    barrier = threading.Barrier(8)

    def build():
        builds.append(1)
        time.sleep(0.05)  # a slow compile: the other threads arrive while it runs
        return object()

    def worker(_):
        barrier.wait()
        return programs.get("shape", build)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert len(builds) == 1 and all(r is results[0] for r in results)


def _memory_maps() -> int:
    return len(Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_clear_programs_frees_the_compiled_programs():
    """Every compiled program holds memory maps; a long process that kept them all ran into
    the kernel's map limit. Clearing gives them back."""
    from userchoice.engine import EngineSpec, knob_grid, simulate
    from userchoice.engine.simulate import _PROGRAMS
    from userchoice.families import Squared
    from userchoice.theory import trap_market

    compile_cache.clear_programs()
    gc.collect()
    before = _memory_maps()
    for steps in range(20, 24):  # four shapes, four programs
        spec = EngineSpec(Squared(), n_learners=2, batch_size=10, steps=steps, eval_every=10)
        simulate(trap_market(gap=2.0, n_users=200), spec, knob_grid(2, seed=range(2), eta=0.01))
    assert len(_PROGRAMS.keys()) == 4
    grown = _memory_maps() - before
    compile_cache.clear_programs()
    gc.collect()
    assert _PROGRAMS.keys() == []
    assert _memory_maps() - before < grown / 2, (before, grown)
