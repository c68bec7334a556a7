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
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice import analysis
from userchoice import reproduce as rp
from userchoice.analysis import (
    CLAIM_CHECKS,
    ClaimData,
    band_halfwidth,
    best_p,
    check_claims,
    experiment_title,
    final_metrics,
    final_rows,
    final_summary,
    format_mean_se,
    gap_closed,
    load_results,
    primary_metric,
    recorded_metrics,
    round_to_se,
    seed_stats,
    validate_checks,
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
    (line,) = [a for a in ax.lines if a.get_gid() == "learner-1"]
    np.testing.assert_allclose(line.get_xdata(), expected.index)
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())


def test_a_registered_metric_appears_in_the_report(results_dir):
    page = render_report(results_dir)
    assert "test fake metric" in page and "a fake metric registered by a test" in page
    assert "test fake market metric" in page and "<h4>Market-wide</h4>" in page
    stats = final_metrics(load_results(results_dir).learners, ["p", "learner"], [FAKE])
    for row in stats.itertuples():
        assert f">{format_mean_se(row.mean, row.sem)}<" in page
    market = final_metrics(load_results(results_dir).market, ["p"], [FAKE_MARKET])
    for row in market.itertuples():
        assert f">{format_mean_se(row.mean, row.sem)}<" in page
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
    gap_se = summary["gap_closed_se"][0]
    assert 0 < gap_se < 1
    assert f"| {format_mean_se(gap, gap_se)} | {(0.9 - 6.0) / (0.4 - 6.0):.2f} |" in line



# ---------------------------------------------------------------------------------------------
# Numbers as a paper prints them
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mean", "sem", "expected"), [
    (0.7512, 0.0034, "0.751 ± 0.003"),
    (0.7512, 0.0014, "0.7512 ± 0.0014"),  # a leading 1 keeps two digits
    (51.48, 0.0086, "51.480 ± 0.009"),
    (0.75, 0.0096, "0.750 ± 0.010"),  # rounding the s.e. moves its first digit
    (1234.5, 56.0, "1230 ± 60"),
    (-0.0123456, 0.00021, "-0.0123 ± 0.0002"),
    (0.7512345, math.nan, "0.7512"),  # one seed: no s.e., 4 significant digits
    (0.5, 0.0, "0.5"),
    (math.nan, 0.1, "–"),
])
def test_rounding_to_the_precision_of_the_standard_error(mean, sem, expected):
    assert format_mean_se(mean, sem) == expected


def test_round_to_se_returns_both_parts():
    assert round_to_se(0.7512, 0.0034) == ("0.751", "0.003")
    assert round_to_se(3.0, None) == ("3", None)


def test_ci_half_width_is_the_t_quantile_times_the_se():
    sem, n = np.array([0.1, 0.1, 0.1]), np.array([2, 5, 1])
    np.testing.assert_allclose(band_halfwidth(sem, n, "se"), sem)
    ci = band_halfwidth(sem, n, "ci95")
    assert ci[0] == pytest.approx(12.706 * 0.1, rel=1e-3)  # t(0.975, 1)
    assert ci[1] == pytest.approx(2.776 * 0.1, rel=1e-3)  # t(0.975, 4)
    assert math.isnan(ci[2])  # one value: undefined
    with pytest.raises(ValueError, match="band must be one of"):
        band_halfwidth(sem, n, "sd")


def test_experiment_titles_are_readable():
    description = ("Census (ACS PUMS, ACSEmployment, logistic); 'good' market: learners start "
                   "from ERM, τ = 0.7; noisy probing κ ∈ {0, 0.2, 0.4}. Paper settings.")
    assert experiment_title({"name": "census_good_kappa", "description": description}) == \
        "Census, good market, noisy probing (κ)"
    assert experiment_title({"name": "census_good", "description": description}) == \
        "Census, good market"
    assert experiment_title({"name": "x", "title": "My sweep", "description": "D"}) == "My sweep"
    assert experiment_title({"name": "only_a_name"}) == "only_a_name"


# ---------------------------------------------------------------------------------------------
# Verdicts on the paper's claims, on synthetic final rows whose answer is known
# ---------------------------------------------------------------------------------------------

SPREAD = np.array([-1.5, -0.5, 0.5, 1.5])  # four seeds around each mean


def claims_frame(means: dict[tuple, float], noise: float = 0.002,
                 noise_of: dict[tuple, float] | None = None,
                 metric: str = "test_accuracy") -> pd.DataFrame:
    """Final rows: ``means[(learner, p, kappa, n_probe)]`` ± a fixed spread over four seeds;
    learner 0 probes."""
    rows = []
    for (learner, p, kappa, n_probe), mean in means.items():
        scale = (noise_of or {}).get((learner, p, kappa, n_probe), noise)
        for seed, z in enumerate(SPREAD):
            rows.append({"run_id": f"{p}-{kappa}-{n_probe}-{seed}", "step": 100,
                         "learner": learner, "is_prober": learner == 0, "p": p,
                         "kappa": kappa, "probing_n_probe": n_probe, "seed": seed,
                         metric: mean + scale * z})
    return pd.DataFrame(rows)


def data_of(curve: dict[float, float], other: dict[float, float] | None = None, *,
            pooled: float = 0.8, higher: bool = True, kappa: float = 0.0,
            metric: str = "test_accuracy") -> ClaimData:
    """A p sweep: the prober (0) follows ``curve``, learner 1 ``other`` (default flat)."""
    means = {(0, p, kappa, 100): v for p, v in curve.items()}
    means |= {(1, p, kappa, 100): (other or {}).get(p, 0.5) for p in curve}
    return ClaimData(claims_frame(means, metric=metric), metric, higher, pooled,
                     ("probing_n_probe",))


def verdict(data: ClaimData, kind: str, **params):
    (result,) = check_claims(data, [{"kind": kind, **params}])
    return result


def test_monotone_in_p():
    rising = data_of({0.0: 0.60, 0.2: 0.68, 0.4: 0.74, 0.8: 0.78})
    assert verdict(rising, "monotone").answer == "yes"
    dip = data_of({0.0: 0.60, 0.2: 0.75, 0.4: 0.66, 0.8: 0.78})  # a real step back
    assert verdict(dip, "monotone").answer == "no"
    flat = data_of({0.0: 0.60, 0.8: 0.60})
    assert verdict(flat, "monotone").answer == "unclear"  # no gain beyond the noise
    worse = data_of({0.0: 0.60, 0.8: 0.50})
    assert verdict(worse, "monotone").answer == "no"
    # a loss improves downwards
    loss = data_of({0.0: 6.0, 0.5: 4.0, 1.0: 3.5}, pooled=3.0, higher=False, metric="test_loss")
    assert verdict(loss, "monotone").answer == "yes"
    assert verdict(data_of({0.0: 0.6}), "monotone").answer == "not tested"
    assert str(verdict(rising, "monotone")).startswith("monotone in p: yes (learner 0: 0.600")


def test_visible_at_p():
    early = data_of({0.0: 0.60, 0.2: 0.70, 0.8: 0.78})
    assert verdict(early, "visible_at", p=0.2).answer == "yes"
    late = data_of({0.0: 0.60, 0.2: 0.6005, 0.8: 0.78})  # within the noise at 0.2
    assert verdict(late, "visible_at", p=0.2).answer == "no"
    result = verdict(data_of({0.0: 0.60, 0.8: 0.78}), "visible_at", p=0.2)
    assert result.answer == "not tested" and "not in the p grid" in result.detail


def test_gap_closed_at_least():
    closes = data_of({0.0: 0.60, 0.8: 0.79})  # 0.95 of the gap to 0.8
    assert verdict(closes, "gap_closed", at_least=0.8).answer == "yes"
    half = data_of({0.0: 0.60, 0.8: 0.70})  # 0.5
    assert verdict(half, "gap_closed", at_least=0.8).answer == "no"
    assert verdict(half, "gap_closed", at_least=0.5).answer == "unclear"  # on the threshold
    assert verdict(data_of({0.0: 0.6}), "gap_closed", at_least=0.5).answer == "not tested"


def test_others_barely_move():
    flat = data_of({0.0: 0.60, 0.8: 0.78}, {0.0: 0.55, 0.8: 0.551})
    assert verdict(flat, "others_flat", max_fraction=0.25).answer == "yes"
    moved = data_of({0.0: 0.60, 0.8: 0.78}, {0.0: 0.55, 0.8: 0.45})
    assert verdict(moved, "others_flat", max_fraction=0.25).answer == "no"


def test_noise_attenuates_but_keeps_the_gain():
    def sweep(gain_noisy: float) -> ClaimData:
        means = {}
        for kappa, gain in ((0.0, 0.18), (0.4, gain_noisy)):
            for p, value in ((0.0, 0.60), (0.8, 0.60 + gain)):
                means[(0, p, kappa, 100)] = value
                means[(1, p, kappa, 100)] = 0.5
        return ClaimData(claims_frame(means), "test_accuracy", True, 0.8, ("probing_n_probe",))

    assert verdict(sweep(0.12), "noise_keeps_gain", kappa=0.4).answer == "yes"
    assert verdict(sweep(0.18), "noise_keeps_gain", kappa=0.4).answer == "yes"  # equal: kept
    assert verdict(sweep(0.0), "noise_keeps_gain", kappa=0.4).answer == "no"  # gain lost
    assert verdict(sweep(0.30), "noise_keeps_gain", kappa=0.4).answer == "no"  # not attenuated
    result = verdict(sweep(0.12), "noise_keeps_gain", kappa=0.2)
    assert result.answer == "not tested"


def test_trapped_without_probing():
    trapped = data_of({0.0: 0.60}, {0.0: 0.45})
    assert verdict(trapped, "trapped", min_gap=0.1).answer == "yes"  # learner 1: 0.35 below
    near = data_of({0.0: 0.79}, {0.0: 0.78})
    assert verdict(near, "trapped", min_gap=0.1).answer == "no"
    loss = data_of({0.0: 6.2}, {0.0: 4.0}, pooled=3.0, higher=False, metric="test_loss")
    assert verdict(loss, "trapped", min_relative=0.5).answer == "yes"  # 6.2 ≥ 1.5 × 3.0
    assert verdict(loss, "trapped", min_relative=1.5).answer == "no"
    assert verdict(loss, "trapped", min_gap=1.0, min_relative=1.0).answer == "not tested"


def test_variance_falls_with_n_probe():
    def ablation(small: float, large: float) -> ClaimData:
        means = {(0, 0.8, 0.0, n): 0.7 for n in (5, 100)}
        frame = claims_frame(means, noise_of={(0, 0.8, 0.0, 5): small,
                                              (0, 0.8, 0.0, 100): large})
        return ClaimData(frame, "test_accuracy", True, 0.8, ("probing_n_probe",))

    along = {"along": "probing.n_probe"}
    assert verdict(ablation(0.05, 0.002), "variance_falls", **along).answer == "yes"
    assert verdict(ablation(0.002, 0.05), "variance_falls", **along).answer == "no"
    assert verdict(ablation(0.01, 0.009), "variance_falls", **along).answer == "unclear"


def test_claim_checks_are_validated_with_the_entry_named():
    assert set(CLAIM_CHECKS.names()) >= {"monotone", "visible_at", "gap_closed", "others_flat",
                                         "noise_keeps_gain", "trapped", "variance_falls"}
    with pytest.raises(ValueError, match=r"reported\.checks\[1\]: unknown claim check "
                                         r"'monotonic'; did you mean 'monotone'"):
        validate_checks([{"kind": "visible_at", "p": 0.2}, {"kind": "monotonic"}])
    with pytest.raises(ValueError, match=r"reported\.checks\[0\] \(visible_at\): missing a "
                                         r"required argument: 'p'"):
        validate_checks([{"kind": "visible_at", "q": 0.2}])
    with pytest.raises(ValueError, match=r"unexpected keyword argument 'q'"):
        validate_checks([{"kind": "visible_at", "p": 0.2, "q": 1}])
    with pytest.raises(ValueError, match=r"reported\.checks\[0\] must be a mapping"):
        validate_checks(["monotone"])
    assert validate_checks(None) == []


def test_every_shipped_check_is_valid():
    for path in sorted(rp.configs_root().rglob("*.yaml")):
        reported = yaml.safe_load(path.read_text()).get("reported") or {}
        validate_checks(reported.get("checks"), where=f"{path}: reported.checks")


def test_summary_md_gives_a_verdict_per_claim(results_dir):
    manifest = json.loads((results_dir / "manifest.json").read_text())
    manifest["config"]["reported"]["checks"] = [{"kind": "monotone"},
                                                {"kind": "visible_at", "p": 0.2}]
    (results_dir / "manifest.json").write_text(json.dumps(manifest))
    summary = rp.experiment_summary(results_dir, "quick")
    assert [v.answer for v in summary["verdicts"]] == ["yes", "not tested"]  # 5.0 → 1.0 loss
    text = rp.render_summary([summary], target="paper", kind="quick")
    assert "- monotone in p: **yes** — learner 0: " in text
    assert "- visible at p = 0.2: **not tested**" in text
    row = next(x for x in text.splitlines() if x.startswith("| fake_results"))
    assert row.endswith("| 1 yes, 1 not tested |")
    assert rp.paper_gap_closed({"prober": {0: 0.6, 0.8: 0.78}, "pooled": 0.79}, True) == \
        pytest.approx(0.18 / 0.19)
    assert rp.paper_gap_closed({"worst_p0": 6.2, "prober_best": 3.5, "pooled": 3.0}, False) == \
        pytest.approx(2.7 / 3.2)
    assert rp.paper_gap_closed({"pooled": 3.0}, False) is None
