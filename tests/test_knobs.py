"""THE knob table: Knobs, make_knobs, validation and the config schema all derive from it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from userchoice.experiments.config import KnobsConfig
from userchoice.knobs import (
    KNOB_NAMES,
    KNOBS,
    SCALAR_KNOBS,
    Interval,
    Knobs,
    describe,
    make_knobs,
    validate_knobs,
)


def test_every_knob_of_the_table_is_a_field_everywhere():
    assert Knobs._fields == KNOB_NAMES == tuple(k.name for k in KNOBS)
    assert tuple(KnobsConfig.model_fields) == KNOB_NAMES
    defaults = make_knobs(3)
    for knob in KNOBS:
        if knob.kind == "per_learner":
            np.testing.assert_array_equal(getattr(defaults, knob.name), np.ones((1, 3)))
        else:
            assert getattr(defaults, knob.name)[0] == knob.default
            assert KnobsConfig.model_fields[knob.name].default == (
                1 if knob.kind == "seed" else knob.default)
        assert f"`{knob.name}`" in describe()


@settings(max_examples=200, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True),
       knob=st.sampled_from([k for k in KNOBS if k.kind == "real"]))
def test_engine_and_config_accept_exactly_the_same_values(value, knob):
    """validate_knobs and the config schema derive from one Interval: they agree on every value."""
    engine_ok = True
    try:
        validate_knobs(make_knobs(2, **{knob.name: value}), 2, probing=_AnyProbing())
    except ValueError:
        engine_ok = False
    try:
        KnobsConfig.model_validate({knob.name: value})
        config_ok = True
    except ValidationError:
        config_ok = False
    assert engine_ok == config_ok == bool(knob.interval.contains(value))


class _AnyProbing:
    """A probing spec that meets every knob's needs (so only intervals are tested)."""

    per_user_source = True
    source = "preferred"


def test_interval_text_and_membership():
    assert str(Interval(0.0, 1.0)) == "[0, 1]"
    assert str(Interval(0.0, None, closed="neither")) == "(0, inf)"
    unit = Interval(0.0, 1.0, closed="left")
    np.testing.assert_array_equal(unit.contains([0.0, 0.5, 1.0, np.nan]),
                                  [True, True, False, False])


def test_needs_come_from_the_table():
    with pytest.raises(ValueError, match=r"p=0\.3 needs probing"):
        validate_knobs(make_knobs(2, p=0.3), 2, probing=None)
    validate_knobs(make_knobs(2, p=0.0), 2, probing=None)
    assert set(SCALAR_KNOBS) == set(KNOB_NAMES) - {"prior"}
