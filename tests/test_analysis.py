"""userchoice.analysis: seed statistics, the primary metric, the best p, the gap closed, and the
metric table driving the figures and the report (a metric registered here, in the test, appears
in the overview figure and the HTML report with no other edit).

The small results directory is written straight with pandas in the store's layout (runs /
learners / market folders of Parquet parts and manifest.json), not by running the engine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice import analysis
from userchoice import reproduce as rp
from userchoice.analysis import (
    best_p,
    final_metrics,
    final_rows,
    final_summary,
    gap_closed,
    load_results,
    primary_metric,
    recorded_metrics,
    seed_stats,
)
from userchoice.metrics import METRICS, register
from userchoice.plots import make_figures
from userchoice.report import render_report

FAKE = "test_fake_metric"
FAKE_MARKET = "test_fake_market_metric"
POOLED = 0.5
SEEDS = 3

# ---------------------------------------------------------------------------------------------
# seed_stats against NumPy by hand
# ---------------------------------------------------------------------------------------------

values = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.just(math.nan))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"]), values),
                min_size=1, max_size=40))
def test_seed_stats_matches_numpy(rows):
    frame = pd.DataFrame(rows, columns=["a", "b", "v"])
    got = seed_stats(frame, ["a", "b"], "v")
    expected = []
    for a in sorted(frame["a"].unique()):
        for b in sorted(frame["b"].unique()):
            x = frame.loc[(frame["a"] == a) & (frame["b"] == b), "v"].to_numpy(float)
            x = x[~np.isnan(x)]
            if not len(x):
                continue  # a group without a value is dropped
            std = x.std(ddof=1) if len(x) > 1 else math.nan
            expected.append((a, b, x.mean(), std / math.sqrt(len(x)), std, len(x)))
    assert list(got.columns) == ["a", "b", "mean", "sem", "std", "n"]
    assert len(got) == len(expected)
    if expected:
        a, b, mean, sem, std, n = map(np.asarray, zip(*expected, strict=True))
        assert got["a"].tolist() == a.tolist() and got["b"].tolist() == b.tolist()
        np.testing.assert_allclose(got["mean"], mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got["std"], std.astype(float), rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(got["sem"], sem.astype(float), rtol=1e-7, atol=1e-7)
        np.testing.assert_array_equal(got["n"], n)


def test_seed_stats_one_seed_order_and_edge_cases():
    frame = pd.DataFrame({"k": [2, 2, 1], "v": [1.0, 3.0, 5.0]})
    got = seed_stats(frame, ["k"], "v")
    assert got["k"].tolist() == [1, 2]  # sorted by the keys
    assert math.isnan(got.loc[0, "sem"]) and math.isnan(got.loc[0, "std"])  # one seed
    assert got.loc[1, "sem"] == pytest.approx(1.0) and got.loc[1, "std"] == pytest.approx(2**0.5)
    assert seed_stats(frame, ["k"], "v", sort=False)["k"].tolist() == [2, 1]  # first seen
    pooled = seed_stats(frame, [], "v")
    assert pooled.loc[0, "mean"] == pytest.approx(3.0) and pooled.loc[0, "n"] == 3
    assert list(seed_stats(frame, ["k"], "missing").columns) == ["k", "mean", "sem", "std", "n"]
    assert analysis.stat_of(frame, "v")["mean"] == pytest.approx(3.0)
    assert analysis.stat_of(frame, "missing") is None
    lookup = analysis.stats_lookup(frame, ["k"], "v")
    assert set(lookup) == {1, 2} and lookup[2]["n"] == 2


# ---------------------------------------------------------------------------------------------
# gap_closed, best_p, primary_metric
# ---------------------------------------------------------------------------------------------


def test_gap_closed():
    assert gap_closed(10.0, 10.0, 0.0) == 0.0
    assert gap_closed(10.0, 0.0, 0.0) == 1.0  # reaches the pooled baseline
    assert gap_closed(10.0, 5.0, 0.0) == pytest.approx(0.5)
    assert gap_closed(0.6, 0.75, 0.8) == pytest.approx(0.75)  # accuracies: the same formula
    assert gap_closed(5.0, 6.0, 1.0) == pytest.approx(-0.25)  # worse than without probing
    assert math.isnan(gap_closed(1.0, 0.5, 1.0))  # no gap to close
    assert math.isnan(gap_closed(None, 0.5, 1.0)) and math.isnan(gap_closed(2.0, 0.5, None))
    assert math.isnan(gap_closed(2.0, math.nan, 1.0))


def rows_for_best_p(metric: str, by_p: dict[float, tuple[float, float]]) -> pd.DataFrame:
    """Two learners (0 probes), two seeds; the final step has ``by_p[p]`` = (prober, other);
    an earlier step holds misleading values."""
    rows = []
    for p, (prober, other) in by_p.items():
        for seed in range(2):
            run = f"p{p}-s{seed}"
            for step, scale in ((0, -100.0), (10, 1.0)):
                for learner, value in ((0, prober), (1, other)):
                    rows.append({"run_id": run, "step": step, "learner": learner, "p": p,
                                 "seed": seed, "is_prober": learner == 0,
                                 metric: value * scale + 0.01 * seed})
    return pd.DataFrame(rows)


def test_best_p_uses_the_probers_final_values_and_the_table_direction():
    loss = rows_for_best_p("test_loss", {0.0: (5.0, 0.1), 0.5: (1.0, 9.0), 1.0: (2.0, 0.0)})
    assert best_p(loss, "test_loss") == 0.5  # lower is better; the non-prober is ignored
    assert best_p(loss, "test_loss", higher=True) == 0.0
    acc = rows_for_best_p("test_accuracy", {0.0: (0.6, 0.9), 0.5: (0.7, 0.1), 1.0: (0.8, 0.1)})
    assert best_p(acc, "test_accuracy") == 1.0  # the table says higher is better
    no_probers = loss.assign(is_prober=False)
    assert best_p(no_probers, "test_loss") == 1.0  # all learners pooled: (2 + 0) / 2
    with pytest.raises(ValueError, match="best p"):
        best_p(loss.assign(test_loss=math.nan), "test_loss")


def test_primary_metric_comes_from_the_table(fake_metric):
    frame = pd.DataFrame({"test_loss": [1.0], "test_accuracy": [0.5], FAKE: [2.0]})
    assert primary_metric(frame) == "test_accuracy"  # the first higher-is-better one
    assert primary_metric(frame.assign(test_accuracy=math.nan)) == "test_loss"
    assert primary_metric(frame, preferred="test_loss") == "test_loss"
    assert primary_metric(frame, preferred="not_a_metric") == "test_accuracy"
    assert primary_metric(frame, preferred="market_share") == "test_accuracy"  # no values
    assert primary_metric(pd.DataFrame({"other": [1.0]})) is None
    higher = "test_fake_higher_metric"
    register(higher, kind="learner", meaning="a score", higher_is_better=True)(lambda ev: 0)
    try:
        only_loss = frame.drop(columns="test_accuracy").assign(**{higher: [0.3]})
        assert primary_metric(only_loss) == higher
        assert analysis.higher_is_better(higher) and not analysis.higher_is_better(FAKE)
    finally:
        METRICS.unregister(higher)


def test_metric_labels_come_from_the_table():
    assert analysis.metric_label("test_accuracy") == METRICS.get("test_accuracy").display
    assert analysis.metric_label("test_loss", "squared") == "global test MSE (global risk)"
    assert analysis.metric_label("market_share") == "market share"


# ---------------------------------------------------------------------------------------------
# A metric registered in the table appears in the figures and the report
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_metric():
    register(FAKE, kind="learner", meaning="a fake metric registered by a test",
             label="test fake metric")(lambda ev: 0.0)
    register(FAKE_MARKET, kind="market", meaning="a fake market-wide metric",
             label="test fake market metric")(lambda ev: 0.0)
    yield FAKE
    METRICS.unregister(FAKE)
    METRICS.unregister(FAKE_MARKET)


def write_results(path: Path) -> Path:
    """A results directory in the store's layout: 3 seeds × p ∈ {0, 1} done, plus one diverged
    run with absurd values that must never enter a statistic."""
    rng = np.random.default_rng(7)
    runs, learners, market = [], [], []
    for k, (seed, p) in enumerate([(s, p) for s in range(SEEDS) for p in (0.0, 1.0)]
                                  + [(SEEDS, 1.0)]):
        run = f"run{k}"
        diverged = seed == SEEDS
        runs.append({"run_id": run, "group": 0, "seed": seed, "tau": 0.7, "p": p, "kappa": 0.0,
                     "eta": 0.02, "probing_n_probe": 20, "chunk": "c0", "seconds": 0.1,
                     "status": "diverged" if diverged else "done",
                     "reason": "parameters not finite from step 10" if diverged else "",
                     "diverged_step": 10 if diverged else -1})
        for step in (0, 10, 20):
            for learner in (0, 1):
                prober = learner == 0
                final_loss = (1.0 if p else 5.0) if prober else 3.0
                loss = final_loss * (1 + 0.5 * (20 - step) / 20) + 0.1 * rng.standard_normal()
                learners.append({
                    "run_id": run, "step": step, "learner": learner,
                    "test_loss": 1e9 if diverged else loss,
                    "market_share": 0.5 + (0.1 if prober else -0.1) * step / 20,
                    "probe_risk": rng.uniform(0, 1) if prober else math.nan,
                    FAKE: 1e9 if diverged else 10 * learner + step + rng.uniform(0, 1),
                    "is_prober": prober})
            market.append({"run_id": run, "step": step, "potential": 2.0 + rng.uniform(0, 1),
                           FAKE_MARKET: 1e9 if diverged else 40.0 + step + rng.uniform(0, 1)})
    for name, rows in (("learners", learners), ("market", market), ("runs", runs)):
        (path / name).mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(path / name / "c0.parquet", index=False)
    manifest = {
        "name": "fake_results", "status": "finished", "n_runs": len(runs), "n_learners": 2,
        "baseline": {"test_loss": POOLED},
        "config": {"name": "fake_results", "description": "written by test_analysis",
                   "learner": {"family": "squared"}, "data": {"dataset": "trap"},
                   "reported": {"metric": "test_loss", "pooled": 0.4,
                                "prober": {"0": 6.0, "1": 0.9}}},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def results_dir(tmp_path, fake_metric) -> Path:
    return write_results(tmp_path / "fake_results")


def done_final(path: Path) -> pd.DataFrame:
    """Independently: the done runs' rows at the last step, read straight from Parquet."""
    runs = pd.read_parquet(path / "runs" / "c0.parquet")
    learners = pd.read_parquet(path / "learners" / "c0.parquet")
    rows = learners.merge(runs[runs["status"] == "done"][["run_id", "p", "seed"]], on="run_id")
    return rows[rows["step"] == rows["step"].max()]


def test_loading_keeps_done_runs_and_every_table_metric(results_dir):
    res = load_results(results_dir)
    assert res.metric == "test_loss" and res.baseline == POOLED
    assert set(res.learners["status"]) == {"done"} and set(res.market["status"]) == {"done"}
    assert recorded_metrics(res.learners) == ["test_loss", "market_share", "probe_risk", FAKE]
    assert recorded_metrics(res.market, ("market",)) == ["potential", FAKE_MARKET]
    assert res.static_columns == ["probing_n_probe"] and res.conditions[-2:] == ["p", "kappa"]
    final = final_rows(res.learners)
    assert set(final["step"]) == {20} and final[FAKE].max() < 1e3
    stats = final_metrics(res.learners, ["p", "learner"])
    assert stats["metric"].tolist()[:4] == ["test_loss", "market_share", "probe_risk", FAKE]
    assert not ((stats["metric"] == "probe_risk") & (stats["learner"] == 1)).any()  # NaN only
    expected = done_final(results_dir)
    fake = stats[(stats["metric"] == FAKE) & (stats["p"] == 1.0) & (stats["learner"] == 1)]
    x = expected.loc[(expected["p"] == 1.0) & (expected["learner"] == 1), FAKE].to_numpy()
    assert fake["n"].item() == SEEDS
    assert fake["mean"].item() == pytest.approx(x.mean())
    assert fake["sem"].item() == pytest.approx(x.std(ddof=1) / np.sqrt(len(x)))


def test_a_registered_metric_gets_an_overview_panel(results_dir):
    figures = dict(make_figures(results_dir))
    overview = figures["metrics_overview"]
    titles = [ax.get_title() for ax in overview.axes if ax.get_visible()]
    assert titles == ["global test loss (global risk)", "market share", "probe risk",
                      "test fake metric", "potential Φ (market)",
                      "test fake market metric (market)"]
    assert "p = 0" in overview.get_suptitle()  # at the smallest p
    ax = overview.axes[titles.index("test fake metric")]
    learners = pd.read_parquet(results_dir / "learners" / "c0.parquet")
    runs = pd.read_parquet(results_dir / "runs" / "c0.parquet")
    ids = runs.loc[(runs["p"] == 0) & (runs["status"] == "done"), "run_id"]
    expected = learners[learners["run_id"].isin(ids) & (learners["learner"] == 1)]
    expected = expected.groupby("step")[FAKE].mean()
    np.testing.assert_allclose(ax.lines[1].get_xdata(), expected.index)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), expected.to_numpy())


def test_a_registered_metric_appears_in_the_report(results_dir):
    page = render_report(results_dir)
    assert "test fake metric" in page and "a fake metric registered by a test" in page
    assert "test fake market metric" in page and "<h4>Market-wide</h4>" in page
    stats = final_metrics(load_results(results_dir).learners, ["p", "learner"], [FAKE])
    for row in stats.itertuples():
        assert f">{row.mean:.4g} ± {row.sem:.4g}<" in page
    market = final_metrics(load_results(results_dir).market, ["p"], [FAKE_MARKET])
    for row in market.itertuples():
        assert f">{row.mean:.4g} ± {row.sem:.4g}<" in page
    assert page.count("<img ") == len(make_figures(results_dir))


def test_summary_and_report_agree_and_the_summary_shows_the_gap_closed(results_dir):
    summary = rp.experiment_summary(results_dir, "quick")
    report = final_summary(results_dir).set_index(["p", "learner"])
    assert summary["metric"] == "test_loss" and summary["pooled"] == POOLED
    assert (summary["p_low"], summary["p_best"]) == (0.0, 1.0)
    assert summary["p_best"] == load_results(results_dir).best_p()
    for row in summary["per_learner"]:
        for p, key in ((0.0, "p_low"), (1.0, "p_best")):
            ours = report.loc[(p, row["learner"])]
            assert row[key]["mean"] == pytest.approx(ours["mean"])
            assert row[key]["sem"] == pytest.approx(ours["sem"])
            assert row[key]["n"] == ours["n"] == SEEDS
    expected = done_final(results_dir)
    prober = expected[expected["learner"] == 0].groupby("p")["test_loss"].mean()
    gap = (prober[1.0] - prober[0.0]) / (POOLED - prober[0.0])
    assert summary["gap_closed"] == {0: pytest.approx(gap)}
    assert summary["gap_closed_paper"] == pytest.approx((0.9 - 6.0) / (0.4 - 6.0))
    text = rp.render_summary([summary], target="paper", kind="quick")
    line = next(x for x in text.splitlines() if x.startswith("| gap closed"))
    assert f"| {gap:.2f} | {(0.9 - 6.0) / (0.4 - 6.0):.2f} |" in line
