"""Results as data: the tidy pandas frames and xarray Datasets of ``SimulationResult`` and of
results directories (``experiments.store.ResultsDir``), with one set of conventions.

Frames (``kind`` picks the metric kind; the default ``"all"`` joins them):

- ``"all"``: one row per (run, evaluation step, learner): the run's knobs (per-learner knobs
  as the learner's own value), ``step``, ``learner``, ``is_prober``, then one column per metric
  in the metric table's order: learner metrics; prober metrics (NaN for learners that do not
  probe); market metrics (the run's value, repeated on each learner's row — average them over
  runs within one learner, not over learners);
- ``"learner"``: the same rows with the learner metrics only;
- ``"prober"``: one row per (run, step, probing learner), ``learner`` naming the prober, with
  the prober metrics;
- ``"market"``: one row per (run, step) with the scalar knobs and the market metrics.

Rows are ordered run, step, learner (so a metric column reshapes to the engine's
[runs, evals, learners] array). Datasets have dims ``run``, ``step``, ``learner`` (learner
metrics), ``prober`` (prober metrics; its coordinate is the prober's learner index) and
(``run``, ``step``) for market metrics; the knobs are coordinates along ``run`` and each metric's
label, meaning, kind and direction (from ``metrics.METRICS``) are in its ``attrs``.

pandas and xarray are imported on first use: the engine does not need them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from userchoice.knobs import BY_NAME, KNOB_NAMES, SCALAR_KNOBS, knobs_of
from userchoice.metrics import KINDS, METRICS

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

FrameKind = Literal["all", "learner", "prober", "market"]
FRAME_KINDS: tuple[str, ...] = ("all", *KINDS)
PER_LEARNER_KNOBS: tuple[str, ...] = tuple(k for k in KNOB_NAMES if k not in SCALAR_KNOBS)
MSGD_KNOBS: tuple[str, ...] = knobs_of("msgd")  # a simulation's scalar knob columns
SIMULATION_KNOBS: tuple[str, ...] = (*MSGD_KNOBS, *PER_LEARNER_KNOBS)
# The store's row keys and bookkeeping columns kept in its frames (what the runs table adds).
STORE_KEYS = ("run_id", "step", "learner")
STORE_RUN_COLUMNS = ("run_id", "group")
STORE_STATUS_COLUMNS = ("status", "reason", "diverged_step")


def check_kind(kind: str) -> None:
    if kind not in FRAME_KINDS:
        raise ValueError(f"kind must be one of {list(FRAME_KINDS)}, got {kind!r}")


def metric_kind(name: str, default: str = "learner") -> str:
    """The metric's kind in the table (``default`` for a name the table does not hold, e.g. a
    plug-in metric not registered in this process)."""
    return METRICS.get(name).kind if name in METRICS else default


def table_order(names: Iterable[str]) -> list[str]:
    """``names`` in the metric table's order; names the table does not hold last, sorted."""
    names = set(names)
    known = [n for n in METRICS.names() if n in names]
    return known + sorted(names - set(known))


def metric_attrs(name: str) -> dict[str, str]:
    """What an xarray variable says about its metric (``long_name`` labels xarray's plots)."""
    if name not in METRICS:
        return {"long_name": name.replace("_", " ")}
    metric = METRICS.get(name)
    return {"long_name": metric.display, "description": metric.meaning, "kind": metric.kind,
            "direction": "higher is better" if metric.higher_is_better else "lower is better"}


def _of_kind(names: Iterable[str], kind: str, default: str = "learner") -> list[str]:
    return [n for n in table_order(names) if metric_kind(n, default) == kind]


# --------------------------------------------------------------------------- from arrays


def simulation_frame(knobs: Any, eval_steps: np.ndarray, metrics: Mapping[str, np.ndarray],
                     n_learners: int, probers: Sequence[int], kind: str = "all"
                     ) -> pd.DataFrame:
    """The tidy frame of one simulation's arrays (see the module docstring)."""
    import pandas as pd

    check_kind(kind)
    steps = np.asarray(eval_steps, dtype=np.int64)
    n_runs, n_evals = int(np.shape(knobs.seed)[0]), len(steps)
    probers = np.asarray(probers, dtype=np.int64)
    if kind == "market":
        columns: dict[str, Any] = {"run": np.repeat(np.arange(n_runs), n_evals)}
        for name in MSGD_KNOBS:
            columns[name] = np.repeat(np.asarray(getattr(knobs, name)), n_evals)
        columns["step"] = np.tile(steps, n_runs)
        for name in _of_kind(metrics, "market"):
            columns[name] = np.asarray(metrics[name]).reshape(-1)
        return pd.DataFrame(columns)
    members = probers if kind == "prober" else np.arange(n_learners)
    width = len(members)
    columns = {"run": np.repeat(np.arange(n_runs), n_evals * width)}
    for name in MSGD_KNOBS:
        columns[name] = np.repeat(np.asarray(getattr(knobs, name)), n_evals * width)
    for name in PER_LEARNER_KNOBS:  # [R, n] → the row's learner's own value
        values = np.asarray(getattr(knobs, name))[:, members]
        columns[name] = np.repeat(values[:, None, :], n_evals, axis=1).reshape(-1)
    columns["step"] = np.tile(np.repeat(steps, width), n_runs)
    columns["learner"] = np.tile(members, n_runs * n_evals)
    if kind != "prober":
        columns["is_prober"] = np.isin(columns["learner"], probers)
    wanted = ("learner", "prober", "market") if kind == "all" else (kind,)
    for name in table_order(metrics):
        metric = metric_kind(name)
        if metric not in wanted:
            continue
        values = np.asarray(metrics[name])
        if metric == "prober" and kind == "all":  # NaN on the rows of learners that don't probe
            full = np.full((n_runs, n_evals, n_learners), np.nan, dtype=values.dtype)
            full[:, :, probers] = values
            values = full
        elif metric == "market":
            values = np.repeat(values[:, :, None], width, axis=2)
        columns[name] = values.reshape(-1)
    return pd.DataFrame(columns)


def simulation_dataset(knobs: Any, eval_steps: np.ndarray, metrics: Mapping[str, np.ndarray],
                       n_learners: int, probers: Sequence[int], diverged_step: np.ndarray,
                       attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The xarray Dataset of one simulation's arrays (see the module docstring)."""
    import xarray as xr

    n_runs = int(np.shape(knobs.seed)[0])
    dims = {"learner": ("run", "step", "learner"), "prober": ("run", "step", "prober"),
            "market": ("run", "step")}
    variables = {name: xr.Variable(dims[metric_kind(name)], np.asarray(metrics[name]),
                                   attrs=metric_attrs(name))
                 for name in table_order(metrics)}
    coords: dict[str, Any] = {
        "run": np.arange(n_runs), "step": np.asarray(eval_steps, dtype=np.int64),
        "learner": np.arange(n_learners), "prober": np.asarray(probers, dtype=np.int64),
        "is_prober": ("learner", np.isin(np.arange(n_learners), probers)),
        "diverged_step": ("run", np.asarray(diverged_step))}
    for name in SIMULATION_KNOBS:
        values = np.asarray(getattr(knobs, name))
        coords[name] = (("run",) if values.ndim == 1 else ("run", "learner"), values)
    return xr.Dataset(variables, coords=coords, attrs=dict(attrs or {}))


# ------------------------------------------------------------------- from stored tables


def _run_columns(runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The runs table's columns a frame carries, in two parts around ``prior``: (id, group,
    knobs) and (static values, status)."""
    bookkeeping = {"chunk", "seconds", *STORE_STATUS_COLUMNS, *STORE_RUN_COLUMNS}
    knobs = [k for k in SCALAR_KNOBS if k in runs]
    static = [c for c in runs.columns if c not in bookkeeping and c not in KNOB_NAMES]
    status = [c for c in STORE_STATUS_COLUMNS if c in runs]
    return [*(c for c in STORE_RUN_COLUMNS if c in runs), *knobs], [*static, *status]


def _prior_of(learners: np.ndarray, prior: Sequence[float] | None) -> np.ndarray:
    """The config's per-learner ``prior`` (shared by every run) of each learner in
    ``learners``; the knob's default when the config sets none."""
    learners = np.asarray(learners, dtype=np.int64)
    if prior is None:
        return np.full(learners.shape, float(BY_NAME["prior"].default))
    return np.asarray(prior, dtype=float)[learners]


def stored_frame(runs: pd.DataFrame, learners: pd.DataFrame, market: pd.DataFrame,
                 kind: str = "all", prior: Sequence[float] | None = None) -> pd.DataFrame:
    """A results directory's tables (each already in canonical order) as one tidy frame:
    the runs table's id, group, knobs, static values and status, then the rows of ``kind``
    as in :func:`simulation_frame` (``run_id`` in place of ``run``)."""
    import pandas as pd

    check_kind(kind)
    head, tail = _run_columns(runs) if len(runs) else (["run_id"], [])
    run_info = runs[[*head, *tail]] if len(runs) else pd.DataFrame(columns=["run_id"])
    if kind == "market":
        if not len(market):
            return pd.DataFrame(columns=[*head, *tail, "step"])
        metric_cols = table_order(c for c in market.columns if c not in STORE_KEYS)
        frame = market[["run_id", "step", *metric_cols]].merge(
            run_info, on="run_id", how="left", validate="many_to_one")
        sort = [c for c in ("group", "run_id", "step") if c in frame]
        return (frame[[*head, *tail, "step", *metric_cols]].sort_values(sort, kind="stable")
                .reset_index(drop=True))
    if not len(learners):
        return pd.DataFrame(columns=[*head, "prior", *tail, "step", "learner"])
    stored = [c for c in learners.columns if c not in (*STORE_KEYS, "is_prober")]
    keep = {"learner": _of_kind(stored, "learner"), "prober": _of_kind(stored, "prober")}
    rows = learners
    if kind == "prober":
        rows = learners[learners["is_prober"].astype(bool)]
        metric_cols = keep["prober"]
    elif kind == "learner":
        metric_cols = keep["learner"]
    else:
        metric_cols = [*keep["learner"], *keep["prober"]]
    flag = [] if kind == "prober" else ["is_prober"]
    frame = rows[[*STORE_KEYS, *flag, *metric_cols]].merge(
        run_info, on="run_id", how="left", validate="many_to_one")
    frame["prior"] = _prior_of(frame["learner"].to_numpy(), prior)
    if kind == "all" and len(market):
        market_cols = table_order(c for c in market.columns if c not in STORE_KEYS)
        frame = frame.merge(market[["run_id", "step", *market_cols]], on=["run_id", "step"],
                            how="left", validate="many_to_one")
        metric_cols = [*metric_cols, *market_cols]
    order = [*head, "prior", *tail, "step", "learner", *flag, *metric_cols]
    sort = [c for c in ("group", "run_id", "step", "learner") if c in frame]
    return frame[order].sort_values(sort, kind="stable").reset_index(drop=True)


def stored_dataset(runs: pd.DataFrame, learners: pd.DataFrame, market: pd.DataFrame,
                   prior: Sequence[float] | None = None,
                   attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """A results directory's tables as an xarray Dataset: dims ``run`` (its coordinate the run
    ids, in the tables' order), ``step`` (every step any run evaluated: NaN where a run did not),
    ``learner``, ``prober``; the runs table's knobs, static values and status as coordinates
    along ``run``. Only runs with rows (not failed ones) appear."""
    import xarray as xr

    parts = []
    stored = [c for c in learners.columns if c not in (*STORE_KEYS, "is_prober")]
    if len(learners):
        learner_cols = _of_kind(stored, "learner")
        parts.append(xr.Dataset.from_dataframe(
            learners.set_index(list(STORE_KEYS))[learner_cols]))
        prober_cols = _of_kind(stored, "prober")
        if prober_cols:
            probing = learners[learners["is_prober"].astype(bool)]
            parts.append(xr.Dataset.from_dataframe(
                probing.rename(columns={"learner": "prober"})
                .set_index(["run_id", "step", "prober"])[prober_cols]))
    if len(market):
        market_cols = table_order(c for c in market.columns if c not in STORE_KEYS)
        parts.append(xr.Dataset.from_dataframe(market.set_index(["run_id", "step"])[market_cols]))
    if not parts:
        return xr.Dataset(attrs=dict(attrs or {}))
    ds = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    order = [rid for rid in dict.fromkeys([*learners.get("run_id", []),
                                           *market.get("run_id", [])])]
    ds = ds.rename({"run_id": "run"}).reindex(run=np.asarray(order, dtype=object))
    ds = ds[table_order(ds.data_vars)]
    for name in ds.data_vars:
        ds[name].attrs = metric_attrs(str(name))
    info = runs.set_index("run_id").reindex(order)
    coords: dict[str, Any] = {}
    head, tail = _run_columns(runs)
    for column in [*head, *tail]:
        if column != "run_id":
            coords[column] = ("run", info[column].to_numpy())
    if "learner" in ds.dims:
        values = _prior_of(ds["learner"].to_numpy(), prior)
        coords["prior"] = (("run", "learner"), np.broadcast_to(values, (len(order), len(values)))
                           .copy())
        probing = (learners.groupby("learner")["is_prober"].any()
                   .reindex(ds["learner"].to_numpy(), fill_value=False))
        coords["is_prober"] = ("learner", probing.to_numpy(dtype=bool))
    return ds.assign_coords(coords).assign_attrs(dict(attrs or {}))
