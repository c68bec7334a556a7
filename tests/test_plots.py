"""Figures and the final summary of results directories (SPEC §8); the results directories
come from tests/results/conftest.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DESCRIPTION, FAILED_NPROBE, PNG_MAGIC
from matplotlib.colors import to_hex

from userchoice.analysis import best_p, experiment_title, final_summary, load_results
from userchoice.plots import (
    FIGURE_KINDS,
    PALETTE,
    STYLES,
    PlotOptions,
    fig_bad_vs_good,
    learner_color,
    make_figures,
    plot_bad_vs_good,
    plot_results,
)


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


def by_gid(ax, gid: str) -> list:
    """The lines and collections of ``ax`` whose gid is ``gid``."""
    return [a for a in [*ax.lines, *ax.collections, *ax.patches] if a.get_gid() == gid]


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
    (line,) = by_gid(ax, "learner-1")
    np.testing.assert_allclose(line.get_xdata(), expected.index)
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy(), rtol=1e-6)
    (baseline,) = by_gid(ax, "pooled-baseline")
    assert baseline.get_ydata()[0] == pytest.approx(res.baseline)  # the dashed baseline


# ---------------------------------------------------------------------------------------------
# Figures a paper can use: colours, baseline, bands, markers, titles, style
# ---------------------------------------------------------------------------------------------


def every_figure(results, **options) -> list:
    drawn = [*make_figures(results["mix"], **options), *make_figures(results["trap"], **options)]
    bad = load_results(results["bad"])
    drawn.append(fig_bad_vs_good(bad, load_results(results["mix"]), PlotOptions(**options)))
    return drawn


def test_each_learner_keeps_one_colour_in_every_panel_and_figure(results):
    seen: dict[int, set] = {}
    for drawn in every_figure(results):
        for ax in drawn.figure.axes:
            for artist in [*ax.lines, *ax.patches]:
                match = re.fullmatch(r"learner-(\d+)", artist.get_gid() or "")
                if match:
                    color = (artist.get_color() if hasattr(artist, "get_color")
                             and not hasattr(artist, "get_edgecolor")
                             else artist.get_edgecolor())
                    seen.setdefault(int(match.group(1)), set()).add(to_hex(color))
    assert set(seen) == {0, 1, 2}  # the mixture's three learners (the trap's 0 and 1 too)
    for learner, colors in seen.items():
        assert colors == {to_hex(learner_color(learner))}, (learner, colors)
    palette = [to_hex(learner_color(i)) for i in range(3)]
    assert len(set(palette)) == 3 and set(palette) <= {to_hex(c) for c in PALETTE}
    # probers are told apart by width and fill, not by hue: prober 0 and 1 of the mix
    fig = dict(make_figures(results["mix"]))["two_prober_comparison"]
    lines = {a.get_gid(): a for a in fig.axes[0].lines if a.get_gid()}
    assert lines["learner-0"].get_linewidth() > lines["learner-2"].get_linewidth()
    assert to_hex(lines["learner-2"].get_markerfacecolor()) == "#ffffff"


def test_the_pooled_baseline_lies_inside_every_axes(results):
    checked = 0
    for drawn in every_figure(results) + every_figure(results, style="paper"):
        for ax in drawn.figure.axes:
            for line in by_gid(ax, "pooled-baseline"):
                y = line.get_ydata()[0]
                low, high = ax.get_ylim()
                assert low < y < high, (drawn.stem, ax.get_title())
                assert high - y >= 0.04 * (high - low), drawn.stem  # room above: not the frame
                checked += 1
    assert checked >= 10


def band_area(fig, gid: str) -> float:
    """The area of a band (shoelace formula over its polygon)."""
    (band,) = by_gid(fig.axes[0], gid)
    x, y = band.get_paths()[0].vertices.T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_ci_bands_are_wider_than_standard_error_bands(results):
    se = dict(make_figures(results["mix"], band="se", overview=False))
    ci = dict(make_figures(results["mix"], band="ci95", overview=False))
    for gid in ("learner-0-band", "learner-1-band"):
        # two seeds: t(0.975, 1) = 12.7 standard errors
        assert band_area(ci["metric_vs_iteration"], gid) > \
            5 * band_area(se["metric_vs_iteration"], gid) > 0

    def bars(fig):
        (collection,) = by_gid(fig.axes[0], "learner-0-errorbar")
        return np.array([np.ptp(seg[:, 1]) for seg in collection.get_segments()])

    assert (bars(ci["final_vs_p"]) > bars(se["final_vs_p"])).all()
    with pytest.raises(ValueError, match="band must be one of"):
        make_figures(results["mix"], band="sd")


def with_reported(results, tmp_path, reported: dict) -> Path:
    copy = tmp_path / "mix"
    shutil.copytree(results["mix"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["reported"] = reported
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_update_all_and_reported_values_are_optional_markers(results, tmp_path):
    copy = with_reported(results, tmp_path, {"prober": {"0": 0.41, "0.5": 0.97},
                                             "pooled": 0.99})
    on = dict(make_figures(copy, update_all=True, overview=False))
    off = dict(make_figures(copy, reported=False, overview=False))
    ax = on["final_vs_p"].axes[0]
    (paper,) = by_gid(ax, "paper")
    assert list(paper.get_xdata()) == [0.0, 0.5] and list(paper.get_ydata()) == [0.41, 0.97]
    assert by_gid(ax, "paper-pooled")[0].get_ydata()[0] == 0.99
    assert ax.get_ylim()[0] < 0.41 and ax.get_ylim()[1] > 0.99  # markers inside the limits
    update = by_gid(ax, "update-all")
    final = final_summary(copy)
    assert len(update) == 1 and 0 < update[0].get_ydata()[0] <= 1
    assert by_gid(on["metric_vs_iteration"].axes[1], "paper")  # the star at p = 0.5
    for fig in off.values():
        for ax in fig.axes:
            assert not by_gid(ax, "paper") and not by_gid(ax, "update-all")
    assert len(final)  # the results themselves are untouched


def test_titles_and_captions_come_from_the_description(results):
    drawn = make_figures(results["trap"], overview=False)
    assert drawn
    title = experiment_title({"name": "trap_tiny", "description": DESCRIPTION})
    for figure in drawn:
        assert figure.caption.endswith(DESCRIPTION)  # the description, after what is drawn
        assert "mean ± standard error across 2 seeds" in figure.caption
        suptitle = figure.figure.get_suptitle()
        assert suptitle.startswith(title) and "trap_tiny" not in suptitle
    assert title.startswith("Trap sweep") and "(" not in title
    paper = make_figures(results["trap"], overview=False, style="paper", band="ci95")
    for figure in paper:
        assert figure.figure.get_suptitle() == ""  # the caption carries the title
        assert "95% confidence interval" in figure.caption


def test_paper_style_sizes_and_fonts(results):
    drawn = dict((f.stem, f.figure) for f in make_figures(results["mix"], style="paper"))
    assert drawn["final_vs_p"].get_figwidth() == pytest.approx(STYLES["paper"].single[0])
    for stem, fig in drawn.items():
        assert fig.get_figwidth() <= STYLES["paper"].max_width + 0.41, stem
        assert fig.dpi == STYLES["paper"].dpi
        label = fig.axes[0].xaxis.label
        if stem != "metrics_overview":  # its small panels use the small size throughout
            assert label.get_fontsize() == STYLES["paper"].font_size
        assert "serif" in label.get_fontfamily()[0] or label.get_fontfamily() == ["serif"]
    screen = dict(make_figures(results["mix"]))
    assert screen["final_vs_p"].get_figwidth() > drawn["final_vs_p"].get_figwidth()
    with pytest.raises(ValueError, match="style must be one of"):
        make_figures(results["mix"], style="poster")


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
    def is_run(runs: pd.DataFrame, seed: int) -> pd.Series:
        return (runs["p"] == 0.5) & (runs["seed"] == seed)

    # the chunk part holding the run (p = 0.5, seed 0), wherever the chunking put it
    part = next(f for f in sorted((copy / "runs").glob("*.parquet"))
                if is_run(pd.read_parquet(f), 0).any())
    runs = pd.read_parquet(part)
    target = runs.index[is_run(runs, 0)][0]
    runs.loc[target, "status"] = "diverged"
    runs.loc[target, "reason"] = "parameters not finite from step 100"
    runs.to_parquet(part, index=False)
    after = final_summary(copy)
    every_run, learners = read_tables(copy)
    kept = every_run.loc[is_run(every_run, 1), "run_id"].item()
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


def test_plot_command_takes_the_figure_options(results, tmp_path):
    from typer.testing import CliRunner

    from userchoice.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["plot", str(results["bad"]), "--out", str(tmp_path / "f"),
                               "--style", "paper", "--band", "ci95", "--update-all",
                               "--no-reported", "--format", "png"])
    assert done.exit_code == 0, done.output
    written = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert written and all(name.endswith(".png") for name in written)
    bad = runner.invoke(app, ["plot", str(results["bad"]), "--style", "poster"])
    assert bad.exit_code == 2 and "style must be one of" in bad.output
