"""Short summaries: repr and _repr_html_ of Dataset, Preferences, Market, SimulationResult and
ResultsDir say what they hold (shapes, names, what varies, timings) in bounded length, never
print the arrays, escape what they show in HTML and never raise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from userchoice import EngineSpec, Logistic, ProbingSpec, knob_grid, simulate, trap_market
from userchoice.data.dataset import Dataset
from userchoice.experiments.store import ResultsDir
from userchoice.market import Market
from userchoice.preferences import Preferences
from userchoice.reprs import short_list

LIMIT = 600  # characters; the default dataclass repr of a 4,000-user market ran to 19k


def no_arrays(text: str) -> bool:
    return "array(" not in text and "[[" not in text


def test_market_dataset_and_preferences_are_summarised():
    market = trap_market(gap=10.0, n_users=4000)
    text = repr(market)
    assert len(text) < LIMIT and no_arrays(text)
    ds = market.dataset
    for part in ("learners=2", f"{ds.n_train:,} users × 4 features", "favourite_shares=[",
                 "trap"):
        assert part in text, part
    text = repr(ds)
    assert len(text) < LIMIT and no_arrays(text) and "g*z0" in text
    assert f"{np.shape(ds.x_test)[0]:,} users" in text
    text = repr(market.preferences_train)
    assert len(text) < 200 and f"users={ds.n_train:,}" in text


def test_long_names_are_cut_and_html_is_escaped():
    rng = np.random.default_rng(0)
    n_features = 1000
    x = rng.standard_normal((50, n_features))
    names = tuple(f"<feature {i}>" for i in range(n_features))
    ds = Dataset(x[:40], np.zeros(40), x[40:], np.zeros(10), feature_names=names,
                 provenance={"dataset": "<script>alert(1)</script>"})
    market = Market(ds, Preferences.from_favourite(np.zeros(40, int), 3),
                    Preferences.from_favourite(np.zeros(10, int), 3), name="<b>mine</b>")
    for obj in (ds, market):
        assert len(repr(obj)) < LIMIT
        page = obj._repr_html_()
        assert page.startswith("<table") and "<script>" not in page and "<b>mine" not in page
        assert "&lt;script&gt;" in page or "&lt;b&gt;mine" in page
    assert "(1000)" in repr(ds)  # how many features there are, not all their names
    assert short_list(range(3)) == "[0, 1, 2]"
    assert short_list(range(100), limit=4) == "[0, 1, 2, …, 99] (100)"


def test_simulation_result_is_summarised(mixture_market):
    spec = EngineSpec(Logistic(), 3, 8, 20, eval_every=10,
                      probing=ProbingSpec(probers=(0,), n_probe=10, probe_batch=4))
    result = simulate(mixture_market, spec, knob_grid(3, seed=range(4), p=[0.0, 0.5], tau=0.6))
    text = repr(result)
    assert len(text) < LIMIT and no_arrays(text)
    for part in ("runs=8", "evals=3 (steps 0–20, every 10)", "probers [0]", "logistic",
                 "seed: 4 values", "p: [0, 0.5]", "tau=0.6", "test_loss", "diverged=0 runs",
                 "compile"):
        assert part in text, part
    page = result._repr_html_()
    assert "<th style='text-align:left'>knobs</th>" in page and no_arrays(page)


def test_results_dir_is_summarised(results, tmp_path):
    store = ResultsDir(results["trap"])
    runs = store.table("runs")
    text = repr(store)
    assert len(text) < LIMIT and no_arrays(text)
    counts = runs["status"].value_counts()
    assert f"{counts['done']} done, {counts['diverged']} diverged, {counts['failed']} failed" \
        in text
    for part in ("name='trap_tiny'", "probing.n_probe: [20, 100, 50]", "kappa: [0.0, 0.4]",
                 "test_loss", "sweep"):
        assert part in text, part
    assert "&lt;" not in text and "<td" in store._repr_html_()
    assert "not a results directory" in repr(ResultsDir(tmp_path / "absent"))
    (tmp_path / "manifest.json").write_text("{not json")
    broken = repr(ResultsDir(tmp_path))  # a damaged manifest: said, not raised
    assert "summary unavailable" in broken and "DamagedResults" in broken


@pytest.mark.parametrize("n_runs", [0, 3])
def test_results_dir_counts_pending_runs(tmp_path, n_runs):
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"name": "new", "config": {"knobs": {"seed": 3}}, "n_runs": n_runs}))
    text = repr(ResultsDir(tmp_path))
    assert f"0 done, 0 diverged, 0 failed, {n_runs} pending of {n_runs}" in text
    assert "seed: 3 values" in text
