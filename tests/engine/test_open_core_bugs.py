"""Bugs found while opening the core, each pinned by a test that failed before the fix."""

from __future__ import annotations

import pytest

from userchoice.engine import EngineSpec, knob_grid, simulate
from userchoice.families import Logistic
from userchoice.probing import ProbingSpec


def test_knobs_made_for_another_market_size_are_refused(mixture_market):
    spec = EngineSpec(Logistic(), 3, 8, 5)
    with pytest.raises(ValueError, match=r"prior has \(2,\) entries per run; the spec has 3"):
        simulate(mixture_market, spec, knob_grid(2, seed=[0, 1]))


def test_an_unknown_metric_name_says_what_the_result_holds(mixture_market):
    result = simulate(mixture_market, EngineSpec(Logistic(), 3, 8, 5), knob_grid(3, seed=[0]))
    with pytest.raises(KeyError, match=r"no metric 'accuracy'.*did you mean 'test_accuracy'"):
        result.final("accuracy")
    with pytest.raises(ValueError, match=r"It holds \[.*'test_loss'"):
        result.metric("accuracy")


def test_a_single_prober_index_gets_a_clear_message():
    with pytest.raises(ValueError, match=r"probers must be a sequence of learner indices, "
                                         r"e.g. probers=\(0,\)"):
        ProbingSpec(0, "preferred")
    with pytest.raises(ValueError, match=r"subset must be a sequence"):
        ProbingSpec((0,), "subset", subset=1)
