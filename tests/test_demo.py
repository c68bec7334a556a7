"""The demo shows the trap (p = 0) and the escape by probing (p > 0), and draws its figure."""

from __future__ import annotations

import numpy as np
import pytest

from userchoice.demo import FIGURE_NAME, run_demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Small enough to stay fast; same spec and run count as tests/cli/test_cli.py (one compilation).
TINY = {"seeds": 2, "steps": 400}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(out_dir=tmp_path_factory.mktemp("demo"), **TINY)


def test_shapes_and_summary(demo):
    n_p = len(demo.p_values)
    assert demo.p_values.tolist() == [0, 0.2, 0.5, 1, 2]
    assert demo.risk_mean.shape == demo.risk_se.shape == (n_p, 2)
    assert demo.update_all_mean.shape == (n_p, 2)
    assert demo.prober_curve.shape == (n_p, len(demo.eval_steps))
    assert demo.eval_steps[0] == 0 and demo.eval_steps[-1] == TINY["steps"]
    assert demo.n_diverged == 0
    assert np.all(np.isfinite(demo.risk_mean)) and np.all(demo.risk_se >= 0)
    assert len(demo.rows()) == 2 * n_p


def test_probing_escapes_the_trap(demo):
    pooled = demo.pooled_risk
    trapped = demo.risk_mean[0, demo.prober]  # p = 0: plain MSGD
    probed = demo.risk_mean[-1, demo.prober]  # largest p
    # Trapped: fitted to its own group, it errs by about Γ²/2 = 50 globally.
    assert trapped > 100 * pooled
    # Probed: at least 100× better than trapped and close to the pooled optimum.
    assert probed < trapped / 100
    assert probed < 10 * pooled
    # The prober's curve starts at its ERM risk and falls for p > 0 only.
    assert demo.prober_curve[-1, -1] < demo.prober_curve[-1, 0] / 100
    assert demo.prober_curve[0, -1] == pytest.approx(demo.prober_curve[0, 0], rel=0.05)


def test_update_all_copies_escape_and_ignore_p(demo):
    # No choice, no probing: far below both trapped learners (they reach the pooled optimum
    # with the default T), and the same numbers for every p (same seeds, same arrivals).
    assert demo.update_all_mean.max() < demo.risk_mean[0].min() / 100
    assert np.all(demo.update_all_mean == demo.update_all_mean[0])


def test_figure_is_a_png(demo):
    assert demo.figure_path is not None and demo.figure_path.name == FIGURE_NAME
    data = demo.figure_path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # two panels with content, not an empty canvas


def test_no_figure_without_out_dir():
    demo = run_demo(out_dir=None, **TINY)
    assert demo.figure_path is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": 0}, "seeds"),
        ({"steps": 0}, "steps"),
        ({"p_values": ()}, "p_values"),
        ({"p_values": (0, 1, 1)}, "repeat"),
        ({"p_values": (0, -1)}, "p="),
    ],
)
def test_bad_arguments_are_named(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run_demo(out_dir=tmp_path, **{**TINY, **kwargs})
