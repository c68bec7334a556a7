"""Figures and the final summary of results directories (SPEC §8); the results directories
come from tests/results/conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAILED_NPROBE, PNG_MAGIC

from userchoice.analysis import best_p, final_summary, load_results
from userchoice.plots import FIGURE_KINDS, make_figures, plot_bad_vs_good, plot_results


def read_tables(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and learners tables read straight from the Parquet files (not via the store)."""
    runs = pd.concat([pd.read_parquet(p) for p in sorted((path / "runs").glob("*.parquet"))])
    learners = pd.concat([pd.read_parquet(p)
                          for p in sorted((path / "learners").glob("*.parquet"))])
    return runs, learners


def expected_summary(path: Path, metric: str, keys: list[str]) -> pd.DataFrame:
    """Independent computation: done runs, last step, mean / sem (ddof 1) / n per condition."""
    runs, learners = read_tables(path)
    done = runs[runs["status"] == "done"]
    rows = learners.merge(done.drop(columns=["chunk", "seconds"]), on="run_id")
    rows = rows[rows["step"] == rows.groupby("run_id")["step"].transform("max")]
    out = []
    for values, part in rows.groupby(keys):
        x = part[metric].to_numpy(float)
        sem = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan
        out.append({**dict(zip(keys, values, strict=True)), "mean": x.mean(), "sem": sem,
                    "n": len(x)})
    return pd.DataFrame(out)


def kinds(paths) -> set[str]:
    return {Path(p).stem.split("__")[0] for p in paths}


def check_files(paths, formats=("png", "pdf")) -> None:
    assert paths
    for path in paths:
        path = Path(path)
        assert path.is_file() and path.stat().st_size > 1000
        assert path.suffix[1:] in formats
        head = path.read_bytes()[:8]
        assert head == PNG_MAGIC if path.suffix == ".png" else head.startswith(b"%PDF-")
    stems = {Path(p).with_suffix("") for p in paths}
    assert len(paths) == len(stems) * len(formats)  # every figure in every format


# ---------------------------------------------------------------------------------------------
# Which figures
# ---------------------------------------------------------------------------------------------


def test_trap_sweep_figures(results):
    paths = plot_results(results["trap"])
    check_files(paths)
    assert all(p.parent == results["trap"] / "figures" for p in paths)  # default out_dir
    assert kinds(paths) == {"metric_vs_iteration", "final_vs_p", "final_vs_nprobe",
                            "market_share_vs_iteration", "metrics_overview"}  # one prober
    names = {p.stem for p in paths}
    # panels over p, one figure per (κ, N_probe) of the finished groups; the failed group has none
    assert "metric_vs_iteration__n_probe=100_kappa=0.4" in names
    assert not any(f"n_probe={FAILED_NPROBE}" in n for n in names)
    assert {n for n in names if n.startswith("final_vs_p")} == {
        "final_vs_p__n_probe=20", "final_vs_p__n_probe=100"}  # κ is a line style, not a file


def test_two_prober_sweep_figures(results, tmp_path):
    paths = plot_results(results["mix"], tmp_path / "figs", formats=("png",))
    check_files(paths, formats=("png",))
    assert kinds(paths) == {"metric_vs_iteration", "final_vs_p", "market_share_vs_iteration",
                            "two_prober_comparison", "metrics_overview"}  # no N_probe grid
    assert {p.name for p in paths} == {p.name for p in (tmp_path / "figs").iterdir()}


def test_single_p_sweep_has_only_time_series(results, tmp_path):
    paths = plot_results(results["bad"], tmp_path, formats=["pdf"])
    check_files(paths, formats=("pdf",))
    assert kinds(paths) == {"metric_vs_iteration", "market_share_vs_iteration",
                            "metrics_overview"}
    assert kinds(paths) < set(FIGURE_KINDS)


def test_bad_formats_are_rejected(results, tmp_path):
    with pytest.raises(ValueError, match="formats"):
        plot_results(results["bad"], tmp_path, formats=("svg",))


def test_metric_vs_iteration_plots_the_seed_means(results):
    res = load_results(results["mix"])
    assert res.metric == "test_accuracy" and res.baseline is not None
    fig = dict(make_figures(res))["metric_vs_iteration"]
    ax = fig.axes[0]  # p = 0
    _, learners = read_tables(results["mix"])
    runs, _ = read_tables(results["mix"])
    ids = runs.loc[(runs["p"] == 0) & (runs["status"] == "done"), "run_id"]
    rows = learners[learners["run_id"].isin(ids) & (learners["learner"] == 1)]
    expected = rows.groupby("step")["test_accuracy"].mean()
    np.testing.assert_allclose(ax.lines[1].get_xdata(), expected.index)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), expected.to_numpy(), rtol=1e-6)
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(res.baseline)  # the dashed baseline


# ---------------------------------------------------------------------------------------------
# The final summary
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["trap", "mix"])
def test_final_summary_matches_an_independent_groupby(results, key):
    summary = final_summary(results[key])
    metric = "test_loss" if key == "trap" else "test_accuracy"
    assert set(summary["metric"]) == {metric}
    keys = (["probing_n_probe", "p", "kappa", "eta", "learner"] if key == "trap"
            else ["p", "kappa", "learner"])
    assert [c for c in summary.columns if c in keys] == keys
    expected = expected_summary(results[key], metric, keys)
    got = summary.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[keys], expected[keys], check_dtype=False)
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-6)
    np.testing.assert_allclose(got["sem"], expected["sem"], rtol=1e-5)
    np.testing.assert_array_equal(got["n"], expected["n"])
    assert (got["n"] == 2).all()  # two seeds everywhere


def test_diverged_and_failed_runs_are_left_out(results):
    runs, _ = read_tables(results["trap"])
    status = runs.groupby("status").size().to_dict()
    assert status.get("diverged", 0) > 0 and status.get("failed", 0) > 0, status
    assert set(runs.loc[runs["status"] == "diverged", "eta"]) == {1000.0}
    assert set(runs.loc[runs["status"] == "failed", "probing_n_probe"]) == {FAILED_NPROBE}
    summary = final_summary(results["trap"])
    assert set(summary["eta"]) == {0.02}
    assert set(summary["probing_n_probe"]) == {20, 100}
    assert np.isfinite(summary["mean"]).all()


def test_a_run_marked_diverged_leaves_the_mean(results, tmp_path):
    copy = tmp_path / "mix"
    shutil.copytree(results["mix"], copy)
    before = final_summary(copy)
    part = next((copy / "runs").glob("*.parquet"))
    runs = pd.read_parquet(part)
    target = runs.index[(runs["p"] == 0.5) & (runs["seed"] == 0)][0]
    runs.loc[target, "status"] = "diverged"
    runs.loc[target, "reason"] = "parameters not finite from step 100"
    runs.to_parquet(part, index=False)
    after = final_summary(copy)
    _, learners = read_tables(copy)
    kept = runs.loc[(runs["p"] == 0.5) & (runs["seed"] == 1), "run_id"].item()
    last = learners[(learners["run_id"] == kept)]
    last = last[last["step"] == last["step"].max()].set_index("learner")["test_accuracy"]
    moved = after[after["p"] == 0.5].set_index("learner")
    np.testing.assert_array_equal(moved["n"], 1)
    np.testing.assert_allclose(moved["mean"], last.loc[moved.index], rtol=1e-6)
    assert moved["sem"].isna().all()  # one seed: no standard error
    pd.testing.assert_frame_equal(after[after["p"] == 0].reset_index(drop=True),
                                  before[before["p"] == 0].reset_index(drop=True))


# ---------------------------------------------------------------------------------------------
# Bad vs good
# ---------------------------------------------------------------------------------------------


def test_bad_vs_good(results, tmp_path):
    paths = plot_bad_vs_good(results["bad"], results["mix"], tmp_path / "outcome")
    assert [p.name for p in paths] == ["outcome.png", "outcome.pdf"]
    check_files(paths)
    res = load_results(results["mix"])
    final = final_summary(res)
    prober_means = final[final["is_prober"]].groupby("p")["mean"].mean()
    assert best_p(res.learners, res.metric) == prober_means.idxmax()  # higher is better
    assert res.best_p() == best_p(res.learners, res.metric)


def test_bad_vs_good_needs_the_same_metric(results, tmp_path):
    with pytest.raises(ValueError, match="different metrics"):
        plot_bad_vs_good(results["trap"], results["mix"], tmp_path / "x")
