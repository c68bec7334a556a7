"""The choice loss as a part of the streaming market: users may choose by another loss than
the learners train on (EngineSpec.choice_loss)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from userchoice.engine import EngineSpec, make_knobs, simulate
from userchoice.families import Logistic, Squared


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _run(market, **fields):
    spec = EngineSpec(Logistic(), 3, 16, 30, eval_every=10, choice="argmin", dtype="float64",
                      **fields)
    return simulate(market, spec, make_knobs(3, seed=[3, 4], eta=0.3))


def test_logistic_choice_loss_at_t_one_is_the_training_loss(mixture_market):
    """The logistic family's training loss is −log σ((2y − 1)f): choosing by it is the
    paper's market, run for run."""
    plain, same = _run(mixture_market), _run(mixture_market, choice_loss="logistic")
    np.testing.assert_array_equal(plain.metrics["batch_share"], same.metrics["batch_share"])
    for name in plain.metrics:
        np.testing.assert_allclose(same.metrics[name], plain.metrics[name], rtol=1e-10,
                                   atol=1e-12, equal_nan=True, err_msg=name)


def test_users_who_judge_correctness_pick_the_first_correct_learner(mixture_market):
    plain, judged = _run(mixture_market), _run(mixture_market, choice_loss="zero_one")
    assert not np.array_equal(plain.metrics["batch_share"], judged.metrics["batch_share"])
    # the expected market share under argmin of 0/1 losses, from the final parameters
    x, y = np.asarray(mixture_market.dataset.x_test), np.asarray(mixture_market.dataset.y_test)
    for run in range(2):
        theta = np.asarray(judged.final_params[run])  # [n, d]
        wrong = ((x @ theta.T > 0).astype(int) != y[:, None])  # [Nt, n]
        first = np.argmin(wrong, axis=1)  # the first correct learner (0 if none is)
        share = np.bincount(first, minlength=3) / len(y)
        np.testing.assert_allclose(judged.metrics["market_share"][run, -1], share, atol=1e-12)
    # learners still train on and report the logistic loss: its values are not 0/1
    losses = judged.metrics["test_loss"]
    assert np.all((losses > 0) & (losses < 5)) and not np.all(np.isin(losses, (0.0, 1.0)))


@pytest.mark.parametrize(("fields", "message"), [
    ({"choice_loss": "hinge"}, r"hinge"),
    ({"choice_loss": "soft01", "loss_temperature": 0.0}, r"loss_temperature must be > 0"),
    ({"choice_loss": "soft01_multiclass"}, r"takes multiclass scores"),
])
def test_bad_choice_losses_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        EngineSpec(Logistic(), 3, 16, 30, **fields)


def test_a_regression_family_has_no_labels_to_judge():
    with pytest.raises(ValueError, match=r"choice_loss 'zero_one' reads class labels"):
        EngineSpec(Squared(), 3, 16, 30, choice_loss="zero_one")
