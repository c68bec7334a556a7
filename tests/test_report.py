"""The HTML report: one self-contained page with the summary numbers, figures, failures,
config and provenance, every text escaped."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
from conftest import DESCRIPTION, INJECTED, PNG_MAGIC
from markupsafe import escape

from userchoice import report
from userchoice.analysis import final_summary, format_mean_se
from userchoice.plots import make_figures
from userchoice.report import render_report, write_report


@pytest.fixture(scope="session")
def page(results, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    written = write_report([results["trap"], results["mix"]], out)
    assert written == out and out.is_file()
    return out.read_text(encoding="utf-8")


def test_page_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", page)
    images = [s for s in sources if s.startswith("data:image/png;base64,")]
    anchors = [s for s in sources if s.startswith("#")]  # the table of contents
    assert len(images) + len(anchors) == len(sources) and len(anchors) == 2
    for uri in images:
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == PNG_MAGIC


def test_every_figure_is_embedded(page, results):
    expected = len(make_figures(results["trap"])) + len(make_figures(results["mix"]))
    assert page.count("<img ") == expected > 0


def test_text_is_escaped(page):
    assert DESCRIPTION not in page
    assert "Trap sweep &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; friends" in page
    assert "injected &lt;failure&gt; for the report" in page  # the failed chunks' reason
    assert INJECTED not in page


def section(page: str, index: int, name: str) -> str:
    start = page.index(f'<section id="exp-{index}-{name}">')
    return page[start:page.index("</section>", start)]


def test_summary_numbers_baseline_and_status(page, results):
    for index, key in enumerate(("trap", "mix")):
        part = section(page, index, f"{key}_tiny")
        grid = part[part.index("by condition and learner"):part.index("Every recorded metric")]
        for row in final_summary(results[key]).itertuples():
            # the p × learner table: mean ± s.e. rounded to what the s.e. supports
            assert f">{format_mean_se(row.mean, row.sem)}<" in grid
    baseline = json.loads((results["mix"] / "manifest.json").read_text())["baseline"]
    assert f">{baseline['test_accuracy']:.6g}<" in page
    assert "parameters not finite from step" in page  # the diverged runs' reason
    trap = section(page, 0, "trap_tiny")
    runs = re.search(r"<th>done</th>.*?<tbody>(.*?)</tbody>", trap, re.S).group(1)
    counts = [int(v) for v in re.findall(r">(\d+)<", runs)]
    done, diverged, failed, pending, total = counts
    assert (failed, pending, total) == (16, 0, 48) and done + diverged == 32 and diverged > 0


def test_config_and_provenance(page):
    assert "static_grid:" in page and "probing.n_probe:" in page  # the config as YAML
    assert "git sha" in page and "jax" in page and "sweep_seconds" in page


def test_data_files_are_listed_with_their_checksums(results, tmp_path):
    copy = tmp_path / "mix"
    shutil.copytree(results["mix"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["data_provenance"] = {"dataset": "census", "files": [
        {"path": "/data/<acs>.csv.gz", "bytes": 1234, "sha256": "ab" * 32}]}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    page = render_report(copy)  # a single directory is fine too
    assert "ab" * 32 in page and "/data/&lt;acs&gt;.csv.gz" in page and "<nav>" not in page


def test_no_directories_is_an_error():
    with pytest.raises(ValueError, match="results_dirs"):
        render_report([])


def test_the_template_autoescapes_and_captions_come_from_the_description(page, results):
    assert report._environment().autoescape is True  # Jinja2 escapes every value
    escaped = str(escape(DESCRIPTION))
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)
    trap = [c for c in captions if escaped in c]
    assert len(trap) == len(make_figures(results["trap"])) > 0  # not just file names
    assert all("mean ± standard error" in c for c in trap)
    assert "<h2>Trap sweep &lt;script&gt;alert&lt;/script&gt; &amp; friends" in page


def test_the_papers_numbers_are_a_table_with_verdicts(results, tmp_path):
    copy = tmp_path / "mix"
    shutil.copytree(results["mix"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["reported"] = {
        "metric": "test_accuracy", "pooled": 0.99, "prober": {"0": 0.5, "0.5": 0.9},
        "claims": ["gains → about 1 <b>"], "source": "SPEC §9",
        "checks": [{"kind": "monotone", "along": "p"}, {"kind": "visible_at", "p": 0.2}]}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    write_report(copy, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_bytes().decode("utf-8")
    paper = page[page.index("The paper's numbers beside ours"):page.index("by condition")]
    assert "<td>prober, p = 0.5</td>" in paper and "<td>pooled baseline</td>" in paper
    assert "gains → about 1 &lt;b&gt;" in paper  # UTF-8 and escaped, not JSON
    assert "\\u2192" not in page and '{"' not in paper
    assert "<td>monotone in p</td>" in paper
    assert re.search(r"<td>visible at p = 0.2</td><td class=\"not-tested\">not tested", paper)
