"""The persistent compilation cache: on by default, in the folder $USERCHOICE_COMPILATION_CACHE
names, off when it says so; a second process loads the program instead of compiling it (from
our stored executables, without tracing; JAX's own cache for what we cannot vouch for)."""

from __future__ import annotations

import dataclasses
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
import json, os, jax, jax.monitoring as monitoring
from userchoice.engine import compile_cache
if os.environ.get("SOURCE_DIGEST"):  # as if this package's source had been edited
    compile_cache._source_digest = lambda: os.environ["SOURCE_DIGEST"]
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
from userchoice.engine import EngineSpec, knob_grid, simulate
from userchoice.families import Squared
from userchoice.theory import trap_market
spec = EngineSpec(Squared(), n_learners=2, batch_size=10, steps=20, eval_every=10)
out = simulate(trap_market(gap=2.0, n_users=200), spec, knob_grid(2, seed=range(2), eta=0.01))
print(json.dumps({"hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses"),
                  "stored": events.count("/userchoice/program_store/writes"),
                  "loaded": events.count("/userchoice/program_store/hits"),
                  "loss": out.metric("test_loss").tolist(),
                  "dir": jax.config.jax_compilation_cache_dir}))
"""


def _run(env_value: str | None, home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != compile_cache.ENV}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), **extra)
    if env_value is not None:
        env[compile_cache.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_program_from_the_cache(tmp_path):
    folder = tmp_path / "jax-cache"
    first = _run(str(folder), tmp_path)
    assert first["dir"] == str(folder) and first["misses"] >= 1 and first["hits"] == 0
    assert first["stored"] == 1 and first["loaded"] == 0
    assert len(list((folder / compile_cache.STORE_FOLDER).glob("engine-*.programs"))) == 1
    second = _run(str(folder), tmp_path)
    # Loaded as compiled: nothing traced, lowered or looked up in JAX's cache; same numbers.
    assert second["loaded"] == 1 and second["stored"] == 0
    assert second["hits"] == 0 and second["misses"] == 0
    assert second["loss"] == first["loss"]
    for stored in (folder / compile_cache.STORE_FOLDER).iterdir():
        stored.unlink()
    third = _run(str(folder), tmp_path)  # no stored executable: JAX's cache answers
    assert third["hits"] >= 1 and third["misses"] == 0 and third["loss"] == first["loss"]
    # What JAX's cache loaded is not stored again (XLA:CPU loses kernels re-serialising it),
    # so the next process still runs correctly, through JAX's cache.
    assert third["stored"] == 0
    fourth = _run(str(folder), tmp_path)
    assert fourth["loaded"] == 0 and fourth["hits"] >= 1 and fourth["loss"] == first["loss"]


def test_an_edited_package_compiles_afresh_and_stores_again(tmp_path):
    """The same program text after an edit (or an upgrade) must not come from JAX's cache,
    which would leave it unstorable: its programs are named after the store digest."""
    folder = tmp_path / "jax-cache"
    first = _run(str(folder), tmp_path)
    edited = _run(str(folder), tmp_path, SOURCE_DIGEST="edited")
    assert edited["hits"] == 0 and edited["misses"] >= 1 and edited["loaded"] == 0
    assert edited["stored"] == 1 and edited["loss"] == first["loss"]
    assert len(list((folder / compile_cache.STORE_FOLDER).glob("engine-*.programs"))) == 2
    again = _run(str(folder), tmp_path, SOURCE_DIGEST="edited")
    assert again["loaded"] == 1 and again["hits"] == 0 and again["loss"] == first["loss"]


def test_a_broken_stored_program_is_compiled_again_with_a_warning(tmp_path):
    folder = tmp_path / "jax-cache"
    first = _run(str(folder), tmp_path)
    (stored,) = (folder / compile_cache.STORE_FOLDER).iterdir()
    stored.write_bytes(b"not a program")
    again = _run(str(folder), tmp_path)
    assert again["loaded"] == 0 and again["loss"] == first["loss"]
    assert not stored.exists() or stored.stat().st_size > 1000  # removed or stored anew


class _Foreign:  # a plug-in of another package would look like this to the store
    pass


@dataclasses.dataclass(frozen=True)
class _ForeignSpec:
    steps: int


def test_only_keys_we_can_vouch_for_are_stored(tmp_path, monkeypatch):
    from userchoice.engine import EngineSpec
    from userchoice.families import Squared

    monkeypatch.setattr(compile_cache, "enable", lambda: tmp_path)  # the cache's folder
    spec = EngineSpec(Squared(), n_learners=2, batch_size=10, steps=20)
    assert compile_cache.canonical(spec) == compile_cache.canonical(
        EngineSpec(Squared(), n_learners=2, batch_size=10, steps=20))
    assert compile_cache.canonical(spec) != compile_cache.canonical(
        EngineSpec(Squared(), n_learners=2, batch_size=10, steps=21))
    assert compile_cache.canonical(frozenset({"b", "a"})) == "frozenset['a', 'b']"
    path = compile_cache.store_path("engine", (spec, False, "((3,), 'float32')", 2))
    assert path is not None and path.parent == tmp_path / compile_cache.STORE_FOLDER
    assert path != compile_cache.store_path("population", (spec, False, "((3,), 'float32')", 2))
    for foreign in (_Foreign(), _ForeignSpec(3), lambda x: x, (spec, print)):
        assert compile_cache.canonical(foreign) is None
        assert compile_cache.store_path("engine", foreign) is None
    monkeypatch.setattr(compile_cache, "enable", lambda: None)  # cache off: nothing stored
    assert compile_cache.store_path("engine", spec) is None


def test_stored_programs_beyond_the_limit_are_pruned_least_recent_first(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_cache, "MAX_STORED", 3)
    for age, name in enumerate("abcde"):
        (tmp_path / f"{name}.programs").write_bytes(b"x")
        os.utime(tmp_path / f"{name}.programs", (1000 + age, 1000 + age))
    compile_cache._prune(tmp_path)
    assert sorted(p.stem for p in tmp_path.glob("*.programs")) == ["c", "d", "e"]
    monkeypatch.setattr(compile_cache, "MAX_STORED_BYTES", 2)
    compile_cache._prune(tmp_path)
    assert sorted(p.stem for p in tmp_path.glob("*.programs")) == ["d", "e"]


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
        return lambda tag: builds.append(key) or key.upper()

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

    def build(tag):
        builds.append(tag)
        time.sleep(0.05)  # a slow compile: the other threads arrive while it runs
        return object()

    def worker(_):
        barrier.wait()
        return programs.get("shape", build)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert builds == [""] and all(r is results[0] for r in results)  # unnamed: not stored


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


class _FakeLowered:
    """Stands for a lowered program whose compile JAX answered from its cache."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.thread: str | None = None
        self.x64: bool | None = None

    def compile(self):
        import jax

        self.thread = threading.current_thread().name
        self.x64 = bool(jax.config.jax_enable_x64)
        jax.monitoring.record_event(compile_cache._HIT)
        if self.fail:
            raise RuntimeError("compile failed")
        return "compiled"


def test_compile_aside_compiles_on_another_thread_and_counts_its_cache_hits_as_ours():
    import jax

    lowered = _FakeLowered()
    before = compile_cache._hits_in_this_thread()
    with jax.enable_x64(True):
        result = compile_cache.compile_aside(lowered)
        assert result() == "compiled"
    assert lowered.thread != threading.current_thread().name and lowered.x64 is True
    # A hit there must stop the caller from storing what JAX's cache loaded.
    assert compile_cache._hits_in_this_thread() == before + 1
    with pytest.raises(RuntimeError, match="compile failed"):
        compile_cache.compile_aside(_FakeLowered(fail=True))()
