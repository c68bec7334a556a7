"""``run`` and ``status`` end with the headline result (final primary metric per learner,
mean ± s.e. over seeds, per p, at the reference conditions, and the pooled baseline);
``status --json`` is one machine-readable object with stable keys."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from userchoice.analysis import format_mean_se, format_number
from userchoice.cli import app, headline
from userchoice.experiments.store import ResultsDir

STATUS_KEYS = {"name", "total", "done", "diverged", "failed", "pending", "damaged_chunks",
               "failures", "headline"}
HEADLINE_KEYS = {"name", "metric", "label", "step", "held", "seeds", "baseline", "rows"}


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)


def by_hand(directory, where: dict) -> pd.DataFrame:
    """Final test loss per p × learner over the done runs at ``where``, straight from the
    stored tables (not through analysis)."""
    rows = ResultsDir(directory).joined("learners")
    rows = rows[(rows["status"] == "done") & (rows["step"] == rows["step"].max())]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows.groupby(["p", "learner"])["test_loss"].agg(["mean", "sem", "count"])


def test_headline_is_the_final_metric_at_the_reference_conditions(results):
    result = headline(results["trap"])
    assert result["metric"] == "test_loss"
    # the trap sweep varies N_probe (largest kept: 100; the 50 group failed), κ and η
    # (smallest kept), and p (one row each)
    assert result["held"] == {"probing_n_probe": 100, "kappa": 0.0, "eta": 0.02}
    expected = by_hand(results["trap"], {"probing_n_probe": 100, "kappa": 0.0, "eta": 0.02})
    assert len(result["rows"]) == len(expected) == 4
    for row in result["rows"]:
        stats = expected.loc[(row["p"], row["learner"])]
        assert np.isclose(row["mean"], stats["mean"]) and np.isclose(row["sem"], stats["sem"])
        assert row["n"] == stats["count"] == result["seeds"] == 2
        assert row["is_prober"] == (row["learner"] == 0)
    manifest = ResultsDir(results["trap"]).read_manifest()
    assert result["baseline"] == manifest["baseline"]["test_loss"]


def test_status_prints_the_headline(results):
    result = headline(results["trap"])
    shown = invoke("status", results["trap"])
    assert shown.exit_code == 0, shown.output
    for row in result["rows"]:
        assert format_mean_se(row["mean"], row["sem"]) in shown.output
    assert "learner 0 (prober)" in shown.output
    assert "pooled baseline" in shown.output
    assert format_number(result["baseline"]) in shown.output


def test_status_json_is_machine_readable(results):
    shown = invoke("status", results["trap"], "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert set(data) == STATUS_KEYS and set(data["headline"]) == HEADLINE_KEYS
    runs = ResultsDir(results["trap"]).table("runs")
    assert data["total"] == len(runs) and data["pending"] == 0
    assert data["done"] == int((runs["status"] == "done").sum()) > 0
    assert data["failed"] == int((runs["status"] == "failed").sum()) > 0
    assert data["diverged"] == int((runs["status"] == "diverged").sum()) > 0
    assert len(data["failures"]) == data["failed"] + data["diverged"]
    assert {f["status"] for f in data["failures"]} == {"failed", "diverged"}
    assert data["headline"] == json.loads(json.dumps(headline(results["trap"])))
    assert data["damaged_chunks"] == {}


def test_status_json_of_no_results_is_an_error_object(tmp_path):
    shown = invoke("status", tmp_path / "missing", "--json")
    assert shown.exit_code == 2
    assert set(json.loads(shown.output)) == {"error"}


def test_a_single_p_sweep_has_one_row_per_learner(results):
    result = headline(results["bad"])  # the mixture sweep's p = 0 runs only
    assert [r["learner"] for r in result["rows"]] == [0, 1, 2]
    assert all("p" not in r for r in result["rows"])
    assert result["baseline"] is not None
