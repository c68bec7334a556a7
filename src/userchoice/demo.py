"""The overspecialisation trap and its escape by preference-aware probing, in one call.

``run_demo`` builds ``trap_market`` (two user groups, two least-squares learners, each the
favourite of one group), starts both learners at their ERM fit on their own group, and runs
MSGD (p = 0) and MSGD-P (p > 0, learner 0 probes with the ``preferred`` source) over a grid of
probing weights p × seeds in one ``simulate`` call. Users pick their favourite with
probability τ = 0.7, otherwise the learner with the lower loss on them.

Without probing learner 0 stays fitted to its own group and is poor on the whole population,
although one linear model fits everyone (the pooled optimum). With probing it asks, for a few
hundred unlabelled users, the learner those users prefer, and its global risk falls to the
pooled optimum.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from userchoice import fitting
from userchoice.analysis import seed_stats
from userchoice.engine import EngineSpec, SimulationResult, knob_grid, simulate
from userchoice.families import Squared
from userchoice.fitting import erm_init, pooled_fit
from userchoice.probing import ProbingSpec
from userchoice.theory import trap_market

PROBER = 0
FIGURE_NAME = "demo.png"


@dataclass
class DemoResult:
    """Summary of a demo run; arrays are indexed [p, learner] unless noted.

    ``risk_mean``/``risk_se``: final global test risk (mean squared error on the test users)
    of each learner, mean and standard error over seeds (s.e. is NaN with a single seed).
    ``update_all_mean``/``update_all_se``: the same for the update-all copies (no choice, no
    probing), which approach the pooled optimum. ``pooled_risk``: test risk of the least-squares
    fit on every training user. ``prober_curve`` [p, eval point]: the prober's test risk at each
    of ``eval_steps``, mean over seeds.
    """

    p_values: np.ndarray
    seeds: int
    prober: int
    risk_mean: np.ndarray
    risk_se: np.ndarray
    update_all_mean: np.ndarray
    update_all_se: np.ndarray
    pooled_risk: float
    eval_steps: np.ndarray
    prober_curve: np.ndarray
    n_diverged: int
    figure_path: Path | None
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    result: SimulationResult | None = field(default=None, repr=False)

    @property
    def n_learners(self) -> int:
        return int(self.risk_mean.shape[1])

    def rows(self) -> list[dict[str, float]]:
        """One record per (p, learner): the table the CLI prints."""
        return [
            {
                "p": float(p),
                "learner": i,
                "risk_mean": float(self.risk_mean[k, i]),
                "risk_se": float(self.risk_se[k, i]),
                "update_all_mean": float(self.update_all_mean[k, i]),
            }
            for k, p in enumerate(self.p_values)
            for i in range(self.n_learners)
        ]


def _mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over seeds of ``values`` [seed, p, learner] → two [p, learner]
    arrays, by ``analysis.seed_stats`` (NaN s.e. with one seed; NaN where no value)."""
    n_seeds, n_p, n = values.shape
    frame = pd.DataFrame({
        "p_index": np.tile(np.repeat(np.arange(n_p), n), n_seeds),
        "learner": np.tile(np.arange(n), n_seeds * n_p),
        "value": np.asarray(values, dtype=float).reshape(-1),
    })
    grid = pd.MultiIndex.from_product([range(n_p), range(n)], names=["p_index", "learner"])
    stats = seed_stats(frame, ["p_index", "learner"], "value").set_index(["p_index", "learner"])
    stats = stats.reindex(grid)
    return (stats["mean"].to_numpy(float).reshape(n_p, n),
            stats["sem"].to_numpy(float).reshape(n_p, n))


def run_demo(
    seeds: int = 5,
    p_values: Sequence[float] = (0, 0.2, 0.5, 1, 2),
    gap: float = 10.0,
    out_dir: str | Path | None = Path("demo_output"),
    steps: int = 2000,
    *,
    eta: float = 0.02,
    tau: float = 0.7,
    noise: float = 0.1,
    n_users: int = 4000,
    batch_size: int = 50,
    n_probe: int = 200,
    probe_batch: int = 50,
    eval_every: int | None = None,
    market_seed: int = 0,
) -> DemoResult:
    """Run MSGD vs MSGD-P on the trap market over ``p_values`` × ``seeds``.

    ``gap`` is Γ, how far apart the two groups' best models are (learner 0's trapped risk grows
    like Γ²/2). Writes ``demo.png`` into ``out_dir`` (created if missing); ``out_dir=None``
    skips the figure. ``eval_every`` defaults to about 50 evaluation points.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int | np.integer) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    p_grid = np.asarray(list(p_values), dtype=float)
    if p_grid.ndim != 1 or p_grid.size == 0:
        raise ValueError(f"p_values must be a non-empty sequence of numbers, got {p_values!r}")
    if np.unique(p_grid).size != p_grid.size:
        raise ValueError(f"p_values must not repeat a value, got {p_grid.tolist()}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if eval_every is None:
        eval_every = max(1, steps // 50)

    started = time.perf_counter()
    family = Squared()
    market = trap_market(gap=gap, noise=noise, n_users=n_users, seed=market_seed)
    init = erm_init(market, family)
    pooled_risk = fitting.evaluate_loss(market, family, pooled_fit(market, family))

    spec = EngineSpec(
        family=family,
        n_learners=2,
        batch_size=batch_size,
        steps=int(steps),
        eval_every=int(eval_every),
        probing=ProbingSpec(
            probers=(PROBER,), source="preferred", n_probe=n_probe, probe_batch=probe_batch
        ),
    )
    # Runs ordered seed-major, p fastest: run r = seed · P + k.
    knobs = knob_grid(2, seed=range(seeds), p=p_grid, tau=tau, eta=eta)
    result = simulate(market, spec, knobs, init_params=init)

    shape = (seeds, p_grid.size)
    if not np.array_equal(np.asarray(knobs.p).reshape(shape)[0], p_grid):
        raise RuntimeError("knob_grid run order changed: expected seed-major, p fastest")
    final = result.final("test_loss").reshape(*shape, -1)  # [seed, p, n]
    final_ua = result.final("update_all_test_loss").reshape(*shape, -1)
    curves = result.metrics["test_loss"][:, :, PROBER].reshape(*shape, -1)  # [seed, p, E]
    risk_mean, risk_se = _mean_se(final)
    ua_mean, ua_se = _mean_se(final_ua)

    figure_path = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        figure_path = out / FIGURE_NAME
    demo = DemoResult(
        p_values=p_grid,
        seeds=int(seeds),
        prober=PROBER,
        risk_mean=risk_mean,
        risk_se=risk_se,
        update_all_mean=ua_mean,
        update_all_se=ua_se,
        pooled_risk=float(pooled_risk),
        eval_steps=np.asarray(result.eval_steps),
        prober_curve=curves.mean(axis=0),
        n_diverged=int(np.sum(result.diverged_step >= 0)),
        figure_path=figure_path,
        seconds=0.0,
        settings={
            "gap": gap,
            "noise": noise,
            "n_users": n_users,
            "market_seed": market_seed,
            "steps": int(steps),
            "eta": eta,
            "tau": tau,
            "batch_size": batch_size,
            "n_probe": n_probe,
            "probe_batch": probe_batch,
            "eval_every": int(eval_every),
        },
        result=result,
    )
    if figure_path is not None:
        plot_demo(demo, figure_path)
    demo.seconds = time.perf_counter() - started
    return demo


def plot_demo(demo: DemoResult, path: str | Path) -> Path:
    """Two panels: final global risk vs p per learner; the prober's risk vs iteration per p."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    order = np.argsort(demo.p_values)
    p_sorted = demo.p_values[order]
    for i in range(demo.n_learners):
        label = f"learner {i}" + (" (prober)" if i == demo.prober else "")
        se = np.nan_to_num(demo.risk_se[order, i])
        left.errorbar(
            p_sorted, demo.risk_mean[order, i], yerr=se, marker="o", capsize=3, label=label
        )
    left.axhline(
        demo.pooled_risk, color="black", linestyle="--", linewidth=1, label="pooled optimum"
    )
    left.set_yscale("log")
    left.set_xlabel("probing weight p  (p = 0: MSGD)")
    left.set_ylabel("final global test risk (MSE)")
    left.set_title(f"Final global risk, mean ± s.e. over {demo.seeds} seed(s)")
    left.legend()

    colours = [f"C{k % 10}" for k in range(len(order))]
    for colour, k in zip(colours, order, strict=True):
        right.plot(
            demo.eval_steps, demo.prober_curve[k], color=colour, label=f"p = {demo.p_values[k]:g}"
        )
    right.axhline(
        demo.pooled_risk, color="black", linestyle="--", linewidth=1, label="pooled optimum"
    )
    right.set_yscale("log")
    right.set_xlabel("iteration")
    right.set_ylabel(f"learner {demo.prober} global test risk")
    right.set_title(f"Prober (learner {demo.prober}), mean over seeds")
    right.legend()
    fig.suptitle(
        f"Overspecialisation trap (gap Γ = {demo.settings.get('gap', '?')}, "
        f"τ = {demo.settings.get('tau', '?')}) and preference-aware probing"
    )
    path = Path(path)
    fig.savefig(path, dpi=120, format="png")
    return path
