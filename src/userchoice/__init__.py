"""userchoice: simulate ML markets where users choose among competing learners."""

from userchoice.data.dataset import Dataset
from userchoice.engine import EngineSpec, Knobs, SimulationResult, knob_grid, make_knobs, simulate
from userchoice.equilibrium import EquilibriumSpec, simulate_equilibrium  # registers its metrics
from userchoice.families import MLP, Logistic, MaskedMultiSquared, Squared, make_family
from userchoice.fitting import erm_init, pooled_fit
from userchoice.market import Market
from userchoice.population import (  # its metrics join the metric table on import
    GroupSet,
    PopulationSpec,
    quadratic_groups,
    simulate_population,
)
from userchoice.preferences import Preferences
from userchoice.probing import ProbingSpec
from userchoice.synthetic import gaussian_mixture_market
from userchoice.theory import trap_market
from userchoice.version import __version__


def __getattr__(name: str):  # results readers need pandas and pyarrow: loaded on first use
    if name == "load_results":
        from userchoice.analysis import load_results

        return load_results
    if name == "ResultsDir":
        from userchoice.experiments.store import ResultsDir

        return ResultsDir
    raise AttributeError(f"module 'userchoice' has no attribute {name!r}")


__all__ = [
    "MLP",
    "Dataset",
    "EngineSpec",
    "EquilibriumSpec",
    "GroupSet",
    "Knobs",
    "Logistic",
    "Market",
    "MaskedMultiSquared",
    "PopulationSpec",
    "Preferences",
    "ProbingSpec",
    "ResultsDir",
    "SimulationResult",
    "Squared",
    "__version__",
    "erm_init",
    "gaussian_mixture_market",
    "knob_grid",
    "load_results",
    "make_family",
    "make_knobs",
    "pooled_fit",
    "quadratic_groups",
    "simulate",
    "simulate_equilibrium",
    "simulate_population",
    "trap_market",
]
