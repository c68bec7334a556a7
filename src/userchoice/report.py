"""One self-contained HTML page for one or more results directories.

Per experiment: its readable title and description, run status counts, the pooled baseline,
the paper's reported numbers as a table beside ours (with the fraction of the gap closed) and a
verdict per machine-checkable claim, the final primary metric as a condition × learner table,
the final value of every recorded metric of the metric table, every applicable figure embedded
as a base64 PNG with its caption, failed and diverged runs with their reasons, the config as
YAML and the provenance (data files with their sha256, versions, git sha, timings).

The page is rendered by Jinja2 from ``templates/report.html.j2`` with autoescaping on, so every
text from the results, the config or the data is escaped; this module passes raw values. No
external assets and no scripts. Every number comes from ``userchoice.analysis`` and is rounded
to the precision its standard error supports (``analysis.format_mean_se``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from userchoice.analysis import (
    BANDS,
    Results,
    experiment_title,
    final_metrics,
    final_summary,
    format_mean_se,
    format_number,
    load_results,
    metric_label,
    recorded_metrics,
)
from userchoice.atomic import atomic_write
from userchoice.metrics import METRICS
from userchoice.plots import PlotOptions, display_name, figure_png, make_figures

MAX_FAILURE_ROWS = 200
TEMPLATE = "report.html.j2"


@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("userchoice", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


def _anchor(name: str, index: int) -> str:
    return f"exp-{index}-{re.sub(r'[^A-Za-z0-9_-]+', '-', name)}"


def _cell(value: Any) -> Any:
    """A condition value as a table shows it (floats to 4 significant digits)."""
    return format_number(value) if isinstance(value, float) else value


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


def _failures(res: Results) -> dict[str, Any] | None:
    runs = res.runs
    bad = runs[runs["status"] != "done"] if len(runs) else runs
    if not len(bad):
        return None
    show = [c for c in ("run_id", "seed", *res.conditions, "status", "diverged_step", "reason")
            if c in bad.columns]
    rows = [[_cell(r[c]) for c in show]
            for r in bad[show].head(MAX_FAILURE_ROWS).to_dict("records")]
    note = (f"First {MAX_FAILURE_ROWS} of {len(bad)} shown." if len(bad) > MAX_FAILURE_ROWS
            else "")
    return {"total": len(bad), "header": [display_name(c) for c in show], "rows": rows,
            "note": note}


def _grid(res: Results) -> dict[str, Any] | None:
    """The final primary metric as a table: one row per condition (p and whatever else
    varies), one column per learner, cells ``mean ± s.e.``; then the number of seeds."""
    summary = final_summary(res)
    if not len(summary):
        return None
    keys = [c for c in summary.columns if c not in ("learner", "is_prober", "mean", "sem", "n",
                                                     "metric")]
    keys = [k for k in keys if summary[k].nunique(dropna=False) > 1 or k == "p"]
    probers = set(res.probers())
    learners = sorted(int(v) for v in summary["learner"].unique())
    header = [*(display_name(k) for k in keys),
              *(f"{res.learner_name(i)}{' *' if i in probers else ''}" for i in learners),
              "seeds"]
    rows = []
    for values, part in summary.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        by_learner = part.set_index("learner")
        cells = [format_mean_se(by_learner.loc[i, "mean"], by_learner.loc[i, "sem"])
                 if i in by_learner.index else "–" for i in learners]
        rows.append([*(_cell(v) for v in values), *cells, int(part["n"].max())])
    return {"header": header, "rows": rows,
            "numeric": [*([True] * len(keys)), *([True] * len(learners)), True]}


def _metrics_table(frame: pd.DataFrame, keys: list[str], metrics: list[str], res: Results,
                   prober_rows: bool) -> dict[str, Any]:
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
        labels = [res.learner_name(int(v)) if k == "learner" else _cell(v)
                  for k, v in where.items()]
        values = [format_mean_se(by_metric[m]["mean"], by_metric[m]["sem"])
                  if m in by_metric else "–" for m in metrics]
        rows.append([*labels, *values])
        classes.append("prober" if prober_rows and int(where["learner"]) in probers else "")
    numeric = [*(k != "learner" for k in keys), *([True] * len(metrics))]
    return {"header": header, "rows": rows, "numeric": numeric, "classes": classes}


def _metrics(res: Results) -> dict[str, Any] | None:
    """The final value of every recorded metric of the metric table, per condition × learner,
    then the market-wide metrics per condition (both driven by ``userchoice.metrics``)."""
    learner_metrics = recorded_metrics(res.learners, ("learner", "prober"))
    market = res.market if res.market is not None else res.learners.iloc[0:0]
    market_metrics = recorded_metrics(market, ("market",))
    if not learner_metrics and not market_metrics:
        return None
    keys = [c for c in res.conditions if c in res.learners]
    out: dict[str, Any] = {"learners": None, "market": None}
    if learner_metrics:
        out["learners"] = _metrics_table(res.learners, [*keys, "learner"], learner_metrics,
                                         res, True)
    if market_metrics:
        out["market"] = _metrics_table(market, [c for c in keys if c in market],
                                       market_metrics, res, False)
    out["legend"] = [[METRICS.get(m).display, m, METRICS.get(m).kind,
                      "higher" if METRICS.get(m).higher_is_better else "lower",
                      METRICS.get(m).meaning] for m in [*learner_metrics, *market_metrics]]
    return out


def _paper(res: Results) -> tuple[dict[str, Any] | None, list[Any]]:
    """The paper's numbers beside ours (rows: quantity, paper, ours) and the verdicts on the
    config's machine-checkable claims (``reproduce.experiment_summary``)."""
    from userchoice.reproduce import comparison_rows, experiment_summary

    reported = (res.manifest.get("config") or {}).get("reported") or {}
    if not reported or res.metric is None:
        return None, []
    summary = experiment_summary(res)
    rows = comparison_rows(summary)
    claims = [str(c) for c in reported.get("claims") or []]
    if not rows and not claims and not summary.get("verdicts"):
        return None, []
    return ({"rows": rows, "claims": claims, "source": reported.get("source")},
            summary.get("verdicts") or [])


def _experiment(res: Results, index: int, options: PlotOptions) -> dict[str, Any]:
    m = res.manifest
    config = m.get("config") or {}
    paper, verdicts = _paper(res)
    files = [[f.get("path", ""), f.get("member", ""), f.get("bytes", ""), f.get("sha256", "")]
             for f in _find_files(m.get("data_provenance"))]
    provenance = [(title, json.dumps(m[key], indent=2, sort_keys=True, default=str,
                                     ensure_ascii=False))
                  for key, title in (("data_provenance", "Data provenance"),
                                     ("market_provenance", "Market (preferences) provenance"))
                  if m.get(key)]
    counts = _status_counts(res)
    figures = [{"stem": f.stem, "title": f.title, "caption": f.caption,
                "png": base64.b64encode(figure_png(f.figure)).decode("ascii")}
               for f in make_figures(res, options=options)]
    return {
        "anchor": _anchor(res.name, index), "name": res.name,
        "title": experiment_title({"name": res.name, **config}),
        "description": config.get("description") or "",
        "facts": [["results directory", str(res.path)],
                  ["dataset", (config.get("data") or {}).get("dataset", "")],
                  ["learners", m.get("n_learners", "")],
                  ["learner family", res.family or ""],
                  ["initialisation", (config.get("init") or {}).get("kind", "")],
                  ["sweep status", m.get("status", "")]],
        "counts": [counts[k] for k in ("done", "diverged", "failed", "pending", "total")],
        "has_runs": bool(len(res.runs)), "failures": _failures(res),
        "baseline": [[k, format_number(v, 6)] for k, v in sorted((m.get("baseline")
                                                                  or {}).items())],
        "paper": paper, "verdicts": verdicts,
        "metric": res.metric or "", "metric_label": metric_label(res.metric, res.family),
        "band_text": BANDS["se"], "grid": _grid(res), "metrics": _metrics(res),
        "figures": figures,
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "files": files, "versions": sorted((m.get("versions") or {}).items()),
        "git_sha": m.get("git_sha") or "unknown", "config_hash": m.get("config_hash")
        or "unknown",
        "timings": [[k, format_number(v)] for k, v in sorted((m.get("timings") or {}).items())],
        "provenance": provenance,
    }


def render_report(results_dirs: Sequence[str | Path] | str | Path,
                  title: str = "userchoice results", options: PlotOptions | None = None,
                  **plot_options: Any) -> str:
    """The HTML text of the report (see :func:`write_report`). ``options`` (or its fields as
    keywords, e.g. ``band="ci95"``) set how the embedded figures are drawn."""
    dirs = [results_dirs] if isinstance(results_dirs, str | Path) else list(results_dirs)
    if not dirs:
        raise ValueError("results_dirs is empty; give at least one results directory")
    if options is not None and plot_options:
        raise TypeError("pass either options= or the keyword options, not both")
    options = options or PlotOptions(**plot_options)
    loaded = [load_results(d) for d in dirs]
    experiments = [_experiment(r, i, options) for i, r in enumerate(loaded)]
    return _environment().get_template(TEMPLATE).render(title=title, experiments=experiments)


def write_report(results_dirs: Sequence[str | Path] | str | Path, out_html: str | Path,
                 **options: Any) -> Path:
    """Write one self-contained HTML page (UTF-8) about ``results_dirs`` to ``out_html``;
    returns it. ``options``: as in :func:`render_report`."""
    out = Path(out_html)
    text = render_report(results_dirs, **options)
    atomic_write(out, lambda f: f.write(text.encode("utf-8")))  # never a half-written page
    return out
