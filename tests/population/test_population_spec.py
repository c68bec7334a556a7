"""The population spec and simulate_population reject bad input with errors naming the field
(no compilation: every check runs before it)."""

from __future__ import annotations

import numpy as np
import pytest

from userchoice import metrics as metric_table
from userchoice.knobs import make_knobs
from userchoice.population import (
    PopulationProbing,
    PopulationSpec,
    compile_population,
    quadratic_groups,
    simulate_population,
)

GROUPS = quadratic_groups([[0.0, 1.0], [1.0, 1.0], [0.6, 0.0]])
EVEN = np.full((2, 3), 0.5)


def test_shape_properties():
    spec = PopulationSpec(n_learners=2, steps=100, max_learners=5, eval_every=30)
    assert (spec.max_n, spec.n_entries, spec.n_phases, spec.total_rounds) == (5, 3, 4, 400)
    np.testing.assert_array_equal(spec.eval_steps, [0, 30, 60, 90, 120, 150, 180, 210, 240,
                                                    270, 300, 330, 360, 390, 400])
    plain = PopulationSpec(n_learners=3, steps=7)
    assert (plain.max_n, plain.n_phases, plain.total_rounds) == (3, 1, 7)
    probe = PopulationSpec(n_learners=2, steps=10, max_learners=3,
                           probing=PopulationProbing((0,), start="equilibrium"))
    assert probe.n_phases == 3


def test_default_metrics_are_the_population_ones():
    spec = PopulationSpec(n_learners=2, steps=5)
    assert set(spec.metrics) == {"total_risk", "average_risk", "learner_risk", "global_risk",
                                 "share", "group_risk", "relative_excess_risk", "segmentation",
                                 "n_learners", "allocation"}
    probed = PopulationSpec(n_learners=2, steps=5, probing=PopulationProbing((0,)))
    assert "population_probe_risk" in probed.metrics
    for name in probed.metrics:
        assert metric_table.get_metric(name).dynamics == ("population",)
    with pytest.raises(ValueError, match="metric 'test_loss' does not apply"):
        PopulationSpec(n_learners=2, steps=5, metrics=("test_loss",))


@pytest.mark.parametrize(("fields", "message"), [
    ({"max_learners": 1, "n_learners": 2}, r"max_learners=1 is below n_learners=2.*entry cap"),
    ({"entry": "random"}, r"entry must be one of \['largest', 'index'\]"),
    ({"max_learners": 4, "entry": (0, 3)}, r"entry: split 1 names learner 3, which does not "
                                           r"exist then \(learners 0..2\)"),
    ({"max_learners": 4, "entry": (0,)}, "entry names 1 parents for 2 entries"),
    ({"update": "sgd"}, r"update must be one of \['retrain', 'gradient_step'\]"),
    ({"stop": "never"}, r"stop must be one of \['consecutive', 'cumulative'\]"),
    ({"weighting": "count"}, r"weighting must be one of \['beta', 'beta_count'\]"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"patience": -1}, "patience must be an integer ≥ 0"),
    ({"rtol": -1e-5}, "rtol must be a finite number ≥ 0"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"eval_every": 1.5}, "eval_every must be a positive integer"),
])
def test_bad_spec_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        PopulationSpec(**{"n_learners": 2, "steps": 10, **fields})


@pytest.mark.parametrize(("fields", "message"), [
    ({"probers": ()}, "probers must name at least one learner"),
    ({"probers": (0, 0)}, "probers must not repeat"),
    ({"probers": (5,)}, r"probers entry 5 out of range; allowed \[0, 1\]"),
    ({"source": "oracle"}, "unknown population probing source 'oracle'"),
    ({"source": "subset"}, "source 'subset' needs a non-empty subset"),
    ({"source": "subset", "subset": (0,)}, "subset must name a learner present from the start "
                                           "other than prober 0"),
    ({"source": "leader", "leader": 2}, r"leader entry 2 out of range"),
    ({"refresh_every": -1}, "refresh_every must be an integer ≥ 0"),
    ({"start": "later"}, r"start must be one of \['start', 'equilibrium'\]"),
])
def test_bad_probing_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        PopulationSpec(n_learners=2, steps=10,
                       probing=PopulationProbing(**{"probers": (0,), **fields}))


def test_probing_needs_two_learners():
    with pytest.raises(ValueError, match="probing needs at least 2 learners"):
        PopulationSpec(n_learners=1, steps=10, probing=PopulationProbing((0,)))


@pytest.mark.parametrize("epsilon", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_epsilon_outside_the_open_unit_interval_is_refused(epsilon):
    spec = PopulationSpec(n_learners=2, steps=10)
    with pytest.raises(ValueError, match=r"epsilon=.* is out of range; allowed epsilon in "
                                         r"\(0, 1\)"):
        simulate_population(GROUPS, spec, make_knobs(2, epsilon=epsilon), EVEN)
    with pytest.raises(ValueError, match="epsilon"):
        compile_population(GROUPS, spec, make_knobs(2, epsilon=epsilon), EVEN)


def test_bad_knobs_and_allocations_are_named():
    spec = PopulationSpec(n_learners=2, steps=10)
    with pytest.raises(ValueError, match="knob tau is not read by the population dynamics"):
        simulate_population(GROUPS, spec, make_knobs(2, tau=0.5), EVEN)
    with pytest.raises(ValueError, match=r"p=0\.5 needs probing"):
        simulate_population(GROUPS, spec, make_knobs(2, p=0.5), EVEN)
    probed = PopulationSpec(n_learners=2, steps=10, probing=PopulationProbing((0,)))
    with pytest.raises(ValueError, match=r"kappa=0\.2 needs a per-user probing source"):
        simulate_population(GROUPS, probed, make_knobs(2, p=0.5, kappa=0.2), EVEN)
    with pytest.raises(ValueError, match=r"knobs were made for 3 learners"):
        simulate_population(GROUPS, spec, make_knobs(3), EVEN)
    with pytest.raises(ValueError, match=r"allocation must have shape \[n_learners=2, G=3\]"):
        simulate_population(GROUPS, spec, make_knobs(2), np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"allocation\[1\]: each group's column must sum"):
        simulate_population(GROUPS, spec, make_knobs(2, seed=[0, 1]),
                            np.stack([EVEN, EVEN * 0.9]))
    with pytest.raises(ValueError, match="theta0 must be finite, of shape"):
        simulate_population(GROUPS, spec, make_knobs(2), EVEN, theta0=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        simulate_population(GROUPS, spec, make_knobs(2), EVEN, chunk_size=0)
