"""Population (participation) dynamics of Dean et al. (AISTATS 2024; NEIGHBOURS §B), in JAX.

A mean-field market: no user sampling. Sub-populations j (mass β_j) allocate themselves over n
learners (α_ij); each round every learner retrains on its allocation, then every group moves
toward the learners that serve it best by multiplicative weights. Market entry splits learners
after each equilibrium; peer probing (NEIGHBOURS §D) adds a probe risk to the probers'
objectives.

- ``groups``: ``GroupSet`` (sufficient statistics of the groups' quadratic risks) and its
  builders; ``initial_allocation``;
- ``spec``: ``PopulationSpec``, ``PopulationProbing`` (static: one compilation each);
- ``sources``: the probing sources of the mean field (``POPULATION_SOURCES``);
- ``step``: the pure ``init_state`` / ``advance`` / ``end_phase`` / ``round_step`` /
  ``evaluate`` of one run;
- ``simulate``: those under ``vmap`` and a while loop, ``simulate_population``;
- ``metrics``: the population metrics, registered in ``userchoice.metrics``.
"""

from userchoice.population.arrays import GroupArrays, MarketState, group_arrays, risks
from userchoice.population.groups import (
    GroupSet,
    empirical_groups,
    gaussian_groups,
    groups_from_dataset,
    initial_allocation,
    quadratic_groups,
    validate_allocation,
)
from userchoice.population.metrics import PopulationEvaluation
from userchoice.population.simulate import (
    PopulationResult,
    compile_population,
    simulate_population,
    validate_population,
)
from userchoice.population.sources import POPULATION_SOURCES, get_population_source
from userchoice.population.spec import PopulationProbing, PopulationSpec
from userchoice.population.step import (
    PopulationState,
    advance,
    end_phase,
    equilibrium_metrics,
    evaluate,
    init_state,
    round_step,
)

__all__ = [
    "POPULATION_SOURCES",
    "GroupArrays",
    "GroupSet",
    "MarketState",
    "PopulationEvaluation",
    "PopulationProbing",
    "PopulationResult",
    "PopulationSpec",
    "PopulationState",
    "advance",
    "compile_population",
    "empirical_groups",
    "end_phase",
    "equilibrium_metrics",
    "evaluate",
    "gaussian_groups",
    "get_population_source",
    "group_arrays",
    "groups_from_dataset",
    "init_state",
    "initial_allocation",
    "quadratic_groups",
    "risks",
    "round_step",
    "simulate_population",
    "validate_allocation",
    "validate_population",
]
