"""The compile phase of a sweep: every distinct program compiled before any chunk runs, side by
side on the pool, and one group that cannot compile leaves the others compiled."""

from __future__ import annotations

import copy
import importlib
import threading

from conftest import TINY_TRAP

from userchoice.experiments import runner as runner_module
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import make_plan

simulate_module = importlib.import_module("userchoice.engine.simulate")


def test_every_distinct_program_is_compiled_once_on_the_pool(monkeypatch):
    raw = copy.deepcopy(TINY_TRAP)
    raw["static_grid"] = {"engine.batch_size": [10, 11, 12]}
    plan = make_plan(config_from_dict(raw))
    jobs = [job for group in plan.groups for job in runner_module.chunk_jobs(group, 2)]
    assert len({(j.group, j.size) for j in jobs}) == 3 < len(jobs)

    compiled: list[tuple[int, str]] = []
    real = runner_module.compile_chunk

    def recording(market, spec, knobs, init_params=None):
        compiled.append((spec.batch_size, threading.current_thread().name))
        if spec.batch_size == 11:
            raise RuntimeError("this group does not compile")
        return real(market, spec, knobs, init_params)

    monkeypatch.setattr(runner_module, "compile_chunk", recording)
    simulate_module._PROGRAMS.clear()
    runner_module.compile_programs(plan, jobs, workers=2)
    assert sorted(b for b, _ in compiled) == [10, 11, 12]  # once per program, none skipped
    assert threading.main_thread().name not in {name for _, name in compiled}  # on the pool
    cached = list(simulate_module._PROGRAMS._programs)
    assert sorted(key[0].batch_size for key in cached) == [10, 12]  # the failure is left alone
