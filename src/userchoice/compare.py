"""One market, every lens (NEIGHBOURS §D): a streaming (MSGD) market run under each dynamics
it admits, side by side.

The market is an MSGD config: its data, its preference construction, its number of learners,
its seeds and its probing. :func:`derive` writes the same market as a config of another
dynamics:

- ``population`` (Dean et al.): one group per favourite of the market's preference construction
  (``groups: {kind: dataset, by: favourite}``), each group's risk the learner family's loss
  (``loss: auto``: logistic for 0/1 labels, else squared), group masses = their sizes;
- ``equilibrium`` (Jagadeesan et al.): share-maximising providers on the dataset's users
  (``setting: dataset``), who choose by the market's choice loss (``engine.choice_loss``;
  default the paper's soft 0-1 loss |y − σ(f/T)|, T = 0.1, logit temperature c = 0.3;
  classification only).

Each derived config is written to ``OUT/configs/<dynamics>.yaml`` and runs with the ordinary
runner into ``OUT/<dynamics>/`` (resumable, like any sweep): ``userchoice run`` on that file
alone gives the same numbers. :func:`lens_table` reads each dynamics' final values of three
lenses (:data:`LENSES`): every learner's **global risk** (its loss over all users, its own or
not), its **market share**, and the market's **social loss** (the loss users bear under their
choices). Each dynamics measures them with its own metrics, loss and users (MSGD: the family's
loss on the test users; population: each group's risk, the family's loss, on the training
users; equilibrium: the choice loss on the training users), so compare shapes across dynamics
(who serves whom, how unequal the shares are) rather than absolute losses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from userchoice.analysis import final_metrics, load_results
from userchoice.atomic import atomic_write
from userchoice.experiments.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    parse_override,
)
from userchoice.families import is_classifier
from userchoice.knobs import DYNAMICS, KNOBS


@dataclass(frozen=True)
class Lens:
    """The metrics one dynamics measures the three lenses with."""

    global_risk: str  # learner kind: each learner's loss over every user
    share: str        # learner kind: its share of the users
    social_loss: str  # market kind: the loss users bear under their choices


LENSES: dict[str, Lens] = {
    "msgd": Lens("test_loss", "market_share", "potential"),
    "population": Lens("global_risk", "share", "average_risk"),
    "equilibrium": Lens("global_loss", "equilibrium_share", "social_loss"),
}
LENS_NAMES = ("global_risk", "share", "social_loss")

# What a derived config sets beyond the market it comes from (``--set`` overrides any of it).
POPULATION_DEFAULTS: dict[str, Any] = {
    "groups": {"kind": "dataset", "by": "favourite", "beta": "count", "split": "train",
               "loss": "auto"},
    # learners that start apart, as the streaming market's do (an even split is a fixed point)
    "steps": 200, "allocation": "jitter", "allocation_scale": 0.5, "eval_every": 10,
}
# The paper's bounded soft 0-1 loss (T = 0.1, c = 0.3): under an unbounded loss (logistic) a
# best response scales θ without end and the rounds need not settle.
EQUILIBRIUM_DEFAULTS: dict[str, Any] = {
    "setting": "dataset", "split": "train", "choice_loss": "soft01", "loss_temperature": 0.1,
    "steps": 300, "max_rounds": 30,
}
# Knobs a derived config sets when the market leaves them at their defaults.
KNOB_DEFAULTS: dict[str, dict[str, Any]] = {"equilibrium": {"temperature": 0.3}}
PROBING_FIELDS = ("probers", "source", "leader", "subset")  # the fields every dynamics reads


def _market_dict(config: ExperimentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_defaults=True)


def admitted(config: ExperimentConfig) -> dict[str, str | None]:
    """Each dynamics → None if it admits the market, else why not."""
    reasons: dict[str, str | None] = {"msgd": None, "population": None, "equilibrium": None}
    if config.market.preferences is None:
        reasons["population"] = ("its groups are the favourites of market.preferences, and the "
                                 "market has none")
    if not is_classifier(config.learner.family):
        reasons["equilibrium"] = (f"its users choose by a classification loss, and learner "
                                  f"family {config.learner.family!r} is not a classifier")
    return reasons


def _check_base(config: ExperimentConfig) -> None:
    if config.dynamics != "msgd":
        raise ConfigError(f"compare starts from a streaming market (dynamics 'msgd': data, "
                          f"market, learner, engine); {config.name!r} has dynamics "
                          f"{config.dynamics!r}")


def _knobs_for(dynamics: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The market's knobs that ``dynamics`` reads (the knob table says which), plus its
    :data:`KNOB_DEFAULTS` where the market left them unset."""
    reads = {k.name for k in KNOBS if dynamics in k.dynamics}
    out = {name: value for name, value in knobs.items() if name in reads}
    for name, value in KNOB_DEFAULTS.get(dynamics, {}).items():
        out.setdefault(name, value)
    return out


def derive(config: ExperimentConfig, dynamics: str,
           overrides: Sequence[str] = ()) -> ExperimentConfig:
    """``config``'s market as a config of ``dynamics`` (named ``<name>_<dynamics>``; the MSGD
    config is ``config`` itself), with ``overrides`` (``key=value``) applied last."""
    _check_base(config)
    if dynamics not in DYNAMICS:
        raise ConfigError(f"--dynamics: {dynamics!r} is not one of {list(DYNAMICS)}")
    if dynamics == "msgd":
        raw = _market_dict(config)
    else:
        reason = admitted(config)[dynamics]
        if reason is not None:
            raise ConfigError(f"dynamics {dynamics!r} does not admit market {config.name!r}: "
                              f"{reason}")
        base = _market_dict(config)
        raw = {"name": f"{config.name}_{dynamics}", "dynamics": dynamics,
               "description": f"{config.name} seen as {dynamics} dynamics (userchoice "
                              f"compare). {config.description}".strip(),
               "data": base["data"], "market": base["market"],
               "knobs": _knobs_for(dynamics, base.get("knobs", {})),
               "baseline": False}
        section = POPULATION_DEFAULTS if dynamics == "population" else EQUILIBRIUM_DEFAULTS
        raw[dynamics] = copy.deepcopy(section)
        if dynamics == "equilibrium" and config.engine.choice_loss is not None:
            # users choose by the market's own choice loss
            raw[dynamics].update(choice_loss=config.engine.choice_loss,
                                 loss_temperature=config.engine.loss_temperature)
        if config.probing is not None:
            probing = config.probing.model_dump(mode="json", exclude_defaults=True)
            raw["probing"] = {k: v for k, v in probing.items() if k in PROBING_FIELDS}
            raw["probing"]["probers"] = list(config.probing.probers)
    return config_from_dict(apply_overrides(raw, list(overrides)),
                            f"{config.name} as {dynamics}")


def route_overrides(overrides: Sequence[str], dynamics: Sequence[str]
                    ) -> dict[str, list[str]]:
    """Which derived config each ``--set`` applies to: a section of one dynamics
    (``engine.*``: msgd, ``population.*``, ``equilibrium.*``) to that one; a knob to every
    dynamics that reads it; anything else (data, market, probing) to all."""
    owner = {"engine": "msgd", "population": "population", "equilibrium": "equilibrium"}
    readers = {k.name: k.dynamics for k in KNOBS}
    routed: dict[str, list[str]] = {d: [] for d in dynamics}
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] in owner:
            targets = [owner[path[0]]]
        elif path[0] == "knobs" and len(path) > 1 and path[1] in readers:
            targets = list(readers[path[1]])
        else:
            targets = list(dynamics)
        for d in targets:
            if d in routed:
                routed[d].append(text)
    return routed


def _write_config(config: ExperimentConfig, path: Path) -> Path:
    text = yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True),
                          sort_keys=False, allow_unicode=True)
    return atomic_write(path, lambda f: f.write(text.encode()))


def lens_table(results_dir: str | Path, dynamics: str | None = None) -> pd.DataFrame:
    """One results directory's final lenses: columns ``dynamics``, the conditions that vary
    (e.g. ``p``), ``lens``, ``metric`` (the dynamics' own metric), ``learner`` (−1 for the
    market's social loss), ``mean``, ``sem``, ``n`` (seeds)."""
    res = load_results(results_dir)
    dynamics = dynamics or res.dynamics
    lens = LENSES[dynamics]
    conditions = [c for c in res.varying() if c != "seed"]
    parts = []
    learner = final_metrics(res.learners, [*conditions, "learner"],
                            [lens.global_risk, lens.share])
    learner["lens"] = learner["metric"].map({lens.global_risk: "global_risk",
                                             lens.share: "share"})
    parts.append(learner)
    if res.market is not None and lens.social_loss in res.market:
        market = final_metrics(res.market, conditions, [lens.social_loss])
        market["lens"], market["learner"] = "social_loss", -1
        parts.append(market)
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "dynamics", dynamics)
    keep = ["dynamics", *conditions, "lens", "metric", "learner", "mean", "sem", "n"]
    table["learner"] = table["learner"].astype(int)
    return table[keep].sort_values(["lens", *conditions, "learner"], kind="stable",
                                   ignore_index=True)


@dataclass
class Comparison:
    """What :func:`compare` made: the lens table, the derived config files, each dynamics'
    results directory, and the files written (table and figure)."""

    table: pd.DataFrame
    configs: dict[str, Path]
    results: dict[str, Path]
    files: list[Path]


Sweep = Callable[[ExperimentConfig, Path], Any]


def compare(config: ExperimentConfig, out: str | Path, dynamics: Sequence[str] | None = None,
            *, overrides: Sequence[str] = (), sweep: Sweep | None = None,
            figure: bool = True) -> Comparison:
    """Run ``config``'s market under each of ``dynamics`` (default: every one it admits) into
    ``out/<dynamics>/`` and write ``out/compare.csv`` (the :func:`lens_table` of each) and,
    with ``figure``, ``out/compare.png``/``.pdf``. ``sweep(config, out)`` runs one config
    (default: ``runner.run_experiment``; the CLI passes one with progress). Finished runs are
    never computed again: a second call only reads."""
    _check_base(config)
    out = Path(out)
    reasons = admitted(config)
    if dynamics is None:
        dynamics = [d for d in DYNAMICS if reasons[d] is None]
    dynamics = list(dict.fromkeys(dynamics))
    if not dynamics:
        raise ConfigError("--dynamics: name at least one dynamics")
    routed = route_overrides(overrides, dynamics)
    derived = {d: derive(config, d, routed[d]) for d in dynamics}  # every error before any run
    if sweep is None:
        from userchoice.experiments.runner import run_experiment

        def sweep(cfg: ExperimentConfig, dest: Path) -> Any:
            return run_experiment(cfg, dest)

    configs, results = {}, {}
    for d, cfg in derived.items():
        configs[d] = _write_config(cfg, out / "configs" / f"{d}.yaml")
        results[d] = out / d
        sweep(cfg, results[d])
    table = pd.concat([lens_table(results[d], d) for d in dynamics], ignore_index=True)
    files = [atomic_write(out / "compare.csv",
                          lambda f: f.write(table.to_csv(index=False).encode()))]
    if figure:
        from userchoice.plots import save_figure
        from userchoice.plots_compare import fig_compare

        plot = fig_compare(table, config.name)
        files += save_figure(plot, out / "compare", ("png", "pdf"))
        import matplotlib.pyplot as plt

        plt.close(plot.figure)
    return Comparison(table, configs, results, files)


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """The lens table side by side: one row per (lens, conditions, learner), one column per
    dynamics (mean values)."""
    keys = [c for c in table.columns if c not in ("dynamics", "metric", "mean", "sem", "n")]
    frame = table.pivot_table(index=keys, columns="dynamics", values="mean", sort=False)
    order = [d for d in DYNAMICS if d in frame.columns]
    frame = frame[order].reset_index()
    frame.columns.name = None
    return frame
