"""The persistent compilation cache: on by default, in the folder $USERCHOICE_COMPILATION_CACHE
names, off when it says so; a second process loads the program instead of compiling it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
