"""One self-contained HTML page for one or more results directories.

Per experiment: title and description, run status counts, the pooled baseline (and the paper's
reported numbers where the config records them), the final-summary table of the primary metric
(mean ± standard error across seeds of done runs), the final value of every recorded metric of
the metric table per learner (and of the market-wide ones), every applicable figure embedded as
a base64 PNG, failed and diverged runs with their reasons, the config as YAML and the
provenance (data files with their sha256, versions, git sha, timings). No external assets and
no scripts; all text is escaped. Every number comes from ``userchoice.analysis``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from userchoice.analysis import (
    Results,
    final_metrics,
    final_summary,
    load_results,
    metric_label,
    recorded_metrics,
)
from userchoice.atomic import atomic_write
from userchoice.metrics import METRICS
from userchoice.plots import display_name, figure_png, make_figures

MAX_FAILURE_ROWS = 200

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #1f4e79; padding-bottom: .2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #bbb; padding-bottom: .15em; }
h3 { margin-top: 1.4em; color: #1f4e79; }
h4 { margin: 1em 0 .3em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.prober td { background: #fff7e6; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: .8em; overflow-x: auto;
      font-size: .85em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
.muted { color: #666; }
.bad { color: #a40000; }
code { font-size: .9em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    """Numbers as shown in the report: ``digits`` significant digits; '–' for missing."""
    if value is None:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "–"
    return f"{number:.{digits}g}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]],
           numeric: Sequence[bool] | None = None, row_classes: Sequence[str] | None = None
           ) -> str:
    """An HTML table; cells are escaped here (pass raw values)."""
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{_e(row_classes[r])}"' if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="num">{_e(c)}</td>' if numeric[k] else f"<td>{_e(c)}</td>"
                        for k, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _facts(rows: Iterable[Sequence[Any]]) -> str:
    """A two-column key/value table (no header row)."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _anchor(name: str, index: int) -> str:
    return f"exp-{index}-{re.sub(r'[^A-Za-z0-9_-]+', '-', name)}"


def _pre(text: str) -> str:
    return f"<pre>{_e(text)}</pre>"


def _find_files(node: Any) -> list[dict[str, Any]]:
    """Every provenance record naming a file with its sha256, wherever it is nested."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "sha256" in node:
            found.append(node)
        for value in node.values():
            if isinstance(value, dict | list):
                found.extend(_find_files(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_find_files(value))
    return found


def _status_counts(res: Results) -> dict[str, int]:
    runs = res.runs
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    total = int(res.manifest.get("n_runs", len(runs)))
    out = {k: int(counts.get(k, 0)) for k in ("done", "diverged", "failed")}
    out["pending"] = max(0, total - sum(int(v) for v in counts.values()))
    out["total"] = total
    return out


def _section_summary(res: Results) -> str:
    summary = final_summary(res)
    if not len(summary):
        return "<p class='muted'>No run finished (status done): no final summary.</p>"
    keys = [c for c in summary.columns if c not in ("learner", "is_prober", "mean", "sem", "n",
                                                     "metric")]
    header = [*(display_name(k) for k in keys), "learner", "prober", "final mean", "± SE", "seeds"]
    rows, classes = [], []
    for record in summary.to_dict("records"):
        rows.append([*(_num(record[k]) if isinstance(record[k], float) else record[k]
                       for k in keys),
                     res.learner_name(int(record["learner"])),
                     "yes" if record["is_prober"] else "",
                     _num(record["mean"]), _num(record["sem"]), int(record["n"])])
        classes.append("prober" if record["is_prober"] else "")
    numeric = [*([True] * len(keys)), False, False, True, True, True]
    label = metric_label(res.metric, res.family)
    return (f"<p>Final value (last evaluation step) of the <b>{_e(label)}</b> "
            f"(<code>{_e(res.metric)}</code>) per condition and learner: mean ± standard error "
            f"across seeds, done runs only.</p>" + _table(header, rows, numeric, classes))


def _mean_sem(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return "–"
    text = _num(stat["mean"])
    return text if math.isnan(stat["sem"]) else f"{text} ± {_num(stat['sem'])}"


def _metrics_table(frame, keys: list[str], metrics: list[str], res: Results,
                   prober_rows: bool) -> str:
    """One row per combination of ``keys``, one column per metric: final mean ± SE."""
    stats = final_metrics(frame, keys, metrics)
    cells: dict[tuple, dict[str, dict[str, Any]]] = {}
    for record in stats.to_dict("records"):
        cells.setdefault(tuple(record[k] for k in keys), {})[record["metric"]] = record
    header = [*(display_name(k) if k != "learner" else "learner" for k in keys),
              *(METRICS.get(m).display for m in metrics)]
    probers = set(res.probers()) if prober_rows else set()
    rows, classes = [], []
    for key, by_metric in cells.items():
        where = dict(zip(keys, key, strict=True))
        labels = [res.learner_name(int(v)) if k == "learner"
                  else _num(v) if isinstance(v, float) else v for k, v in where.items()]
        rows.append([*labels, *(_mean_sem(by_metric.get(m)) for m in metrics)])
        classes.append("prober" if prober_rows and int(where["learner"]) in probers else "")
    numeric = [*(k != "learner" for k in keys), *([True] * len(metrics))]
    return _table(header, rows, numeric, classes)


def _metric_legend(metrics: list[str]) -> str:
    rows = [[METRICS.get(m).display, m, METRICS.get(m).kind,
             "higher" if METRICS.get(m).higher_is_better else "lower", METRICS.get(m).meaning]
            for m in metrics]
    return ("<details><summary>What the metrics mean (the metric table)</summary>"
            + _table(["metric", "column", "kind", "better", "meaning"], rows) + "</details>")


def _section_metrics(res: Results) -> str:
    """The final value of every recorded metric of the metric table, per condition × learner,
    then the market-wide metrics per condition (both driven by ``userchoice.metrics``)."""
    learner_metrics = recorded_metrics(res.learners, ("learner", "prober"))
    market = res.market if res.market is not None else res.learners.iloc[0:0]
    market_metrics = recorded_metrics(market, ("market",))
    if not learner_metrics and not market_metrics:
        return "<p class='muted'>No run finished (status done): no metrics.</p>"
    keys = [c for c in res.conditions if c in res.learners]
    parts = ["<p>Final value (last evaluation step) of every metric the runs recorded: mean "
             "± standard error across seeds, done runs only.</p>"]
    if learner_metrics:
        parts.append("<h4>Per learner</h4>"
                     + _metrics_table(res.learners, [*keys, "learner"], learner_metrics, res,
                                      True))
    if market_metrics:
        market_keys = [c for c in keys if c in market]
        parts.append("<h4>Market-wide</h4>"
                     + _metrics_table(market, market_keys, market_metrics, res, False))
    parts.append(_metric_legend([*learner_metrics, *market_metrics]))
    return "".join(parts)


def _section_baseline(res: Results) -> str:
    baseline = res.manifest.get("baseline")
    parts = []
    if baseline:
        rows = [[k, _num(v, 6)] for k, v in sorted(baseline.items())]
        parts.append("<p>Pooled model trained on all training users (no choice):</p>"
                     + _table(["metric", "value"], rows, [False, True]))
    else:
        parts.append("<p class='muted'>No pooled baseline was recorded.</p>")
    reported = (res.manifest.get("config") or {}).get("reported") or {}
    if reported:
        rows = [[k, json.dumps(v) if isinstance(v, dict | list) else v]
                for k, v in reported.items()]
        parts.append("<p>Numbers reported in the paper (from the config):</p>"
                     + _table(["quantity", "reported"], rows))
    return "".join(parts)


def _section_status(res: Results) -> str:
    counts = _status_counts(res)
    table = _table(["done", "diverged", "failed", "pending", "total"],
                   [[counts[k] for k in ("done", "diverged", "failed", "pending", "total")]],
                   [True] * 5)
    runs = res.runs
    if not len(runs):
        return table
    bad = runs[runs["status"] != "done"]
    if not len(bad):
        return table + "<p class='muted'>No failed or diverged runs.</p>"
    show = [c for c in ("run_id", "seed", *res.conditions, "status", "diverged_step", "reason")
            if c in bad.columns]
    rows = [[_num(r[c]) if isinstance(r[c], float) else r[c] for c in show]
            for r in bad[show].head(MAX_FAILURE_ROWS).to_dict("records")]
    note = (f"<p class='muted'>First {MAX_FAILURE_ROWS} of {len(bad)} shown.</p>"
            if len(bad) > MAX_FAILURE_ROWS else "")
    return (table + f"<h4 class='bad'>Failed and diverged runs ({len(bad)})</h4>"
            + _table([display_name(c) for c in show], rows) + note)


def _section_figures(res: Results) -> str:
    figures = make_figures(res)
    if not figures:
        return "<p class='muted'>No figures (no run finished).</p>"
    parts = []
    for stem, fig in figures:
        data = base64.b64encode(figure_png(fig)).decode("ascii")
        parts.append(f'<figure><img alt="{_e(stem)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{_e(stem)}</figcaption></figure>")
    return "".join(parts)


def _section_provenance(res: Results) -> str:
    m = res.manifest
    parts = []
    files = _find_files(m.get("data_provenance"))
    if files:
        rows = [[f.get("path", ""), f.get("member", ""), f.get("bytes", ""), f.get("sha256", "")]
                for f in files]
        parts.append("<h4>Data files</h4>"
                     + _table(["path", "member", "bytes", "sha256"], rows,
                              [False, False, True, False]))
    else:
        parts.append("<h4>Data files</h4><p class='muted'>No input files (synthetic data).</p>")
    versions = m.get("versions") or {}
    parts.append("<h4>Versions</h4>"
                 + _table(["package", "version"], sorted(versions.items()))
                 + f"<p>git sha: <code>{_e(m.get('git_sha') or 'unknown')}</code>; "
                   f"config hash: <code>{_e(m.get('config_hash') or 'unknown')}</code></p>")
    timings = m.get("timings") or {}
    if timings:
        parts.append("<h4>Timings</h4>"
                     + _table(["stage", "seconds"],
                              [[k, _num(v, 4)] for k, v in sorted(timings.items())],
                              [False, True]))
    for key, title in (("data_provenance", "Data provenance"),
                       ("market_provenance", "Market (preferences) provenance")):
        value = m.get(key)
        if value:
            parts.append(f"<details><summary>{_e(title)}</summary>"
                         f"{_pre(json.dumps(value, indent=2, sort_keys=True, default=str))}"
                         f"</details>")
    return "".join(parts)


def _section(res: Results, index: int) -> str:
    config = res.manifest.get("config") or {}
    description = config.get("description") or ""
    facts = [
        ["results directory", str(res.path)],
        ["dataset", (config.get("data") or {}).get("dataset", "")],
        ["learners", res.manifest.get("n_learners", "")],
        ["learner family", res.family or ""],
        ["initialisation", (config.get("init") or {}).get("kind", "")],
        ["sweep status", res.manifest.get("status", "")],
    ]
    config_yaml = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    return "".join([
        f'<section id="{_e(_anchor(res.name, index))}">',
        f"<h2>{_e(res.name)}</h2>",
        f"<p>{_e(description)}</p>" if description else "",
        _facts(facts),
        "<h3>Runs</h3>", _section_status(res),
        "<h3>Pooled baseline</h3>", _section_baseline(res),
        "<h3>Final summary</h3>", _section_summary(res),
        "<h3>Every recorded metric</h3>", _section_metrics(res),
        "<h3>Figures</h3>", _section_figures(res),
        "<h3>Config</h3>", _pre(config_yaml),
        "<h3>Provenance</h3>", _section_provenance(res),
        "</section>",
    ])


def render_report(results_dirs: Sequence[str | Path] | str | Path,
                  title: str = "userchoice results") -> str:
    """The HTML text of the report (see :func:`write_report`)."""
    dirs = [results_dirs] if isinstance(results_dirs, str | Path) else list(results_dirs)
    if not dirs:
        raise ValueError("results_dirs is empty; give at least one results directory")
    loaded = [load_results(d) for d in dirs]
    toc = ""
    if len(loaded) > 1:
        items = "".join(f'<li><a href="#{_e(_anchor(r.name, i))}">{_e(r.name)}</a></li>'
                        for i, r in enumerate(loaded))
        toc = f"<nav><ul>{items}</ul></nav>"
    body = "".join(_section(r, i) for i, r in enumerate(loaded))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1>{toc}{body}</body></html>\n")


def write_report(results_dirs: Sequence[str | Path] | str | Path, out_html: str | Path) -> Path:
    """Write one self-contained HTML page about ``results_dirs`` to ``out_html``; returns it."""
    out = Path(out_html)
    text = render_report(results_dirs)
    atomic_write(out, lambda f: f.write(text.encode("utf-8")))  # never a half-written page
    return out

