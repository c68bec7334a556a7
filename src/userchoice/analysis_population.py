"""Claim checks of the neighbouring dynamics (population dynamics, share-maximising
equilibria), registered in ``analysis.CLAIM_CHECKS`` (configs name them in
``reported.checks``).

Each reads the whole results (``ClaimData.results``): the market table over rounds and, for
population dynamics, the ``phases`` table (one row per equilibrium). Conditions are selected by
``where`` (results column → value, e.g. ``{population_allocation: even}``); answers follow the
package's rule (yes / no beyond ``analysis.Z`` standard errors or the stated tolerance;
unclear within it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from userchoice.analysis import CLAIM_CHECKS, ClaimData, Verdict, _judge, format_mean_se


def _market(data: ClaimData) -> pd.DataFrame | None:
    res = data.results
    if res is None or res.dynamics == "msgd" or res.market is None:
        return None
    return res.market


def _where(frame: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    for column, value in (where or {}).items():
        if column not in frame:
            raise KeyError(f"where: the results have no column {column!r}")
        frame = frame[frame[column].astype(str) == str(value)]
    return frame


def _described(where: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k} = {v}" for k, v in (where or {}).items())


def _first_last(frame: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    ordered = frame.sort_values(["run_id", "step"])
    grouped = ordered.groupby("run_id")[metric]
    return grouped.first(), grouped.last()


@CLAIM_CHECKS.register("fixed_point")
def check_fixed_point(data: ClaimData, where: Mapping[str, Any] | None = None,
                      total_risk: float | None = None, tol: float = 1e-3) -> Verdict:
    """The runs at ``where`` never leave their initial state: total risk at the last round
    equals that at round 0 (within ``tol``), and equals ``total_risk`` when given."""
    claim = "a fixed point" + (f" at {_described(where)}" if where else "")
    market = _market(data)
    if market is None or "total_risk" not in market:
        return Verdict(claim, "not tested", "needs population-dynamics results with total_risk")
    rows = _where(market, where)
    if not len(rows):
        return Verdict(claim, "not tested", f"no runs at {_described(where)}")
    first, last = _first_last(rows, "total_risk")
    drift = float(np.max(np.abs(last - first)))
    off = 0.0 if total_risk is None else float(np.max(np.abs(last - total_risk)))
    answer = "yes" if drift <= tol and off <= tol else "no"
    detail = f"total risk {last.mean():.6g} at the end, largest drift {drift:.3g}"
    if total_risk is not None:
        detail += f" (expected {total_risk:g} ± {tol:g})"
    return Verdict(claim, answer, detail)


@CLAIM_CHECKS.register("segmented")
def check_segmented(data: ClaimData, where: Mapping[str, Any] | None = None,
                    at_least: float = 1.0) -> Verdict:
    """Every run at ``where`` ends segmented: the share of groups served by one learner
    (allocation > 0.99, metric ``segmentation``) is at least ``at_least``."""
    claim = "segmented at the end" + (f" ({_described(where)})" if where else "")
    market = _market(data)
    if market is None or "segmentation" not in market:
        return Verdict(claim, "not tested", "needs population-dynamics results with "
                       "segmentation")
    rows = _where(market, where)
    if not len(rows):
        return Verdict(claim, "not tested", f"no runs at {_described(where)}")
    _, last = _first_last(rows, "segmentation")
    share = float((last >= at_least - 1e-12).mean())
    return Verdict(claim, "yes" if share == 1.0 else "no",
                   f"{share:.0%} of {len(last)} runs end with segmentation ≥ {at_least:g} "
                   f"(lowest {last.min():.3g})")


def _phases(data: ClaimData) -> pd.DataFrame | None:
    res = data.results
    if res is None or res.dynamics != "population":
        return None
    phases = res.extra.get("phases")
    return phases if phases is not None and len(phases) else None


@CLAIM_CHECKS.register("falls_with_entry")
def check_falls_with_entry(data: ClaimData, metric: str = "total_risk",
                           tol: float = 1e-9) -> Verdict:
    """In every run, ``metric`` at each equilibrium is below the previous one (each entry
    lowers it), up to ``tol``."""
    claim = f"{metric.replace('_', ' ')} falls with each entry"
    phases = _phases(data)
    if phases is None or metric not in phases or phases["phase"].nunique() < 2:
        return Verdict(claim, "not tested", "needs market entry (two or more equilibria)")
    rises = 0
    steps = 0
    for _, run in phases.sort_values(["run_id", "phase"]).groupby("run_id"):
        values = run[metric].to_numpy(float)
        diffs = np.diff(values)
        rises += int((diffs > tol).sum())
        steps += len(diffs)
    return Verdict(claim, "yes" if rises == 0 else "no",
                   f"{rises} of {steps} entries raised it")


@CLAIM_CHECKS.register("plateaus")
def check_plateaus(data: ClaimData, metric: str = "average_risk",
                   fraction: float = 0.25) -> Verdict:
    """``metric`` at equilibrium flattens as learners enter: the mean fall over the last
    third of the entries is below ``fraction`` of the mean fall over the first third."""
    claim = f"{metric.replace('_', ' ')} at equilibrium plateaus"
    phases = _phases(data)
    if phases is None or metric not in phases or phases["phase"].nunique() < 6:
        return Verdict(claim, "not tested", "needs six or more equilibria (market entry)")
    curve = phases.groupby("phase")[metric].mean().sort_index().to_numpy(float)
    falls = -np.diff(curve)
    third = max(1, len(falls) // 3)
    early, late = falls[:third].mean(), falls[-third:].mean()
    if early <= 0:
        return Verdict(claim, "unclear", f"the first entries do not lower it ({early:.3g})")
    ratio = late / early
    return Verdict(claim, "yes" if ratio < fraction else "no",
                   f"mean fall over the last entries is {ratio:.2g} × that over the first")


@CLAIM_CHECKS.register("market_trend")
def check_market_trend(data: ClaimData, metric: str = "total_risk", along: str = "p",
                       direction: str = "decreasing",
                       where: Mapping[str, Any] | None = None) -> Verdict:
    """A market metric's final value (mean over seeds) moves in ``direction`` from the
    smallest to the largest value of ``along``, beyond ``analysis.Z`` standard errors."""
    if direction not in ("decreasing", "increasing"):
        raise ValueError(f"direction must be 'decreasing' or 'increasing', got {direction!r}")
    claim = f"final {metric.replace('_', ' ')} {direction} in {along}" + (
        f" ({_described(where)})" if where else "")
    market = _market(data)
    if market is None or metric not in market or along not in market:
        return Verdict(claim, "not tested", f"needs {metric} and a grid of {along}")
    rows = _where(market, where)
    final = rows.sort_values("step").groupby("run_id").tail(1)
    values = sorted(final[along].unique())
    if len(values) < 2:
        return Verdict(claim, "not tested", f"needs two or more values of {along}")
    lo = final[final[along] == values[0]][metric]
    hi = final[final[along] == values[-1]][metric]
    change = float(hi.mean() - lo.mean())
    se = float(np.hypot(lo.sem(), hi.sem())) if len(lo) > 1 and len(hi) > 1 else 0.0
    signed = -change if direction == "decreasing" else change
    answer = _judge(signed, se) if se > 0 else ("yes" if signed > 0 else "no")
    return Verdict(claim, answer, f"{along} = {values[0]:g}: "
                   f"{format_mean_se(lo.mean(), lo.sem())}; {along} = {values[-1]:g}: "
                   f"{format_mean_se(hi.mean(), hi.sem())}")


def _final(rows: pd.DataFrame) -> pd.DataFrame:
    """Each run's last market row."""
    return rows.sort_values("step").groupby("run_id").tail(1)


@CLAIM_CHECKS.register("market_compare")
def check_market_compare(data: ClaimData, metric: str, along: str, at: Any, than: Any,
                         where: Mapping[str, Any] | None = None,
                         direction: str = "higher") -> Verdict:
    """A market metric's final value (mean over runs) at ``along = at`` is ``higher`` (or
    ``lower``) than at ``along = than``, beyond ``analysis.Z`` standard errors."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    claim = (f"final {metric.replace('_', ' ')} {direction} at {along} = {at} than at {than}"
             + (f" ({_described(where)})" if where else ""))
    market = _market(data)
    if market is None or metric not in market or along not in market:
        return Verdict(claim, "not tested", f"needs {metric} and a grid of {along}")
    final = _final(_where(market, where))
    a = final[final[along].astype(str) == str(at)][metric].dropna()
    b = final[final[along].astype(str) == str(than)][metric].dropna()
    if not len(a) or not len(b):
        return Verdict(claim, "not tested", f"{along} = {at} or {than} is not in the grid")
    gap = float(a.mean() - b.mean()) * (1 if direction == "higher" else -1)
    se = float(np.hypot(a.sem(), b.sem())) if len(a) > 1 and len(b) > 1 else 0.0
    answer = _judge(gap, se) if se > 0 else ("yes" if gap > 0 else "no")
    return Verdict(claim, answer, f"{along} = {at}: {format_mean_se(a.mean(), a.sem())}; "
                   f"{along} = {than}: {format_mean_se(b.mean(), b.sem())}")


@CLAIM_CHECKS.register("versus_bayes")
def check_versus_bayes(data: ClaimData, relation: str = "equal",
                       where: Mapping[str, Any] | None = None, tol: float = 0.02) -> Verdict:
    """At equilibrium, the social loss ``equal``s the Bayes risk of the best single model
    (within ``tol`` in every run) or lies ``below`` it (by more than ``tol`` on average)."""
    if relation not in ("equal", "below"):
        raise ValueError(f"relation must be 'equal' or 'below', got {relation!r}")
    claim = f"social loss {'equals' if relation == 'equal' else 'below'} the Bayes risk" + (
        f" ({_described(where)})" if where else "")
    market = _market(data)
    if market is None or not {"social_loss", "bayes_risk"} <= set(market):
        return Verdict(claim, "not tested", "needs equilibrium results (social_loss, "
                       "bayes_risk)")
    final = _final(_where(market, where)).dropna(subset=["social_loss", "bayes_risk"])
    if not len(final):
        return Verdict(claim, "not tested", f"no runs at {_described(where)}")
    gap = final["social_loss"] - final["bayes_risk"]
    if relation == "equal":
        worst = float(gap.abs().max())
        return Verdict(claim, "yes" if worst <= tol else "no",
                       f"largest |social − Bayes| {worst:.3g} over {len(final)} runs")
    mean = float(gap.mean())
    return Verdict(claim, "yes" if mean < -tol else "no",
                   f"social − Bayes = {mean:.3g} on average over {len(final)} runs")
