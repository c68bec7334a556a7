"""Competition for market share (Jagadeesan, Jordan, Steinhardt, Haghtalab, NeurIPS 2023;
NEIGHBOURS §C), in JAX.

m providers with linear predictors f_j(x) = θ_jᵀx; users choose by logit with prior weights,
P_j(x) ∝ w_j e^{−ℓ_j(x)/c}, ℓ a pluggable choice loss; each provider maximises its market share
S_j = E_x[P_j(x)]. The equilibrium is found by round-robin best responses (full-batch gradient
ascent, warm-started); probing at equilibrium (NEIGHBOURS §D) subtracts p × a probe risk.

- ``losses``: the choice losses (``CHOICE_LOSSES``: ``soft01``, ``soft01_multiclass``,
  ``zero_one``, ``logistic``);
- ``data``: ``EquilibriumData`` (shared or per-run users), ``stack_data``, ``with_bias``,
  ``from_dataset`` (bring-your-own features);
- ``settings``: the paper's synthetic settings 1–3 and ``alpha_star``;
- ``spec``: ``EquilibriumSpec``, ``EquilibriumProbing`` (static: one compilation each);
- ``sources``: the probing sources (``EQUILIBRIUM_SOURCES``);
- ``step``: the pure choice, best response, round and Bayes risk of one run;
- ``simulate``: those under ``vmap`` and a while loop, ``simulate_equilibrium``;
- ``metrics``: the equilibrium metrics, registered in ``userchoice.metrics``.
"""

from userchoice.choice_losses import (
    CHOICE_LOSSES,
    ChoiceLoss,
    get_choice_loss,
    predicted_labels,
)
from userchoice.equilibrium.data import (
    DataArrays,
    EquilibriumData,
    from_dataset,
    stack_data,
    with_bias,
)
from userchoice.equilibrium.metrics import EquilibriumEvaluation
from userchoice.equilibrium.settings import (
    alpha_star,
    bayes_risk_setting1,
    paper_knobs,
    setting1,
    setting2,
    setting3,
)
from userchoice.equilibrium.simulate import (
    EquilibriumResult,
    compile_equilibrium,
    simulate_equilibrium,
    validate_equilibrium,
)
from userchoice.equilibrium.sources import EQUILIBRIUM_SOURCES, get_equilibrium_source
from userchoice.equilibrium.spec import EQUILIBRIUM_KNOBS, EquilibriumProbing, EquilibriumSpec
from userchoice.equilibrium.step import (
    EquilibriumState,
    bayes_risk,
    best_response,
    choice_probabilities,
    init_state,
    log_choice_probabilities,
    market,
    round_step,
    social_loss,
)

__all__ = [
    "CHOICE_LOSSES",
    "EQUILIBRIUM_KNOBS",
    "EQUILIBRIUM_SOURCES",
    "ChoiceLoss",
    "DataArrays",
    "EquilibriumData",
    "EquilibriumEvaluation",
    "EquilibriumProbing",
    "EquilibriumResult",
    "EquilibriumSpec",
    "EquilibriumState",
    "alpha_star",
    "bayes_risk",
    "bayes_risk_setting1",
    "best_response",
    "choice_probabilities",
    "compile_equilibrium",
    "from_dataset",
    "get_choice_loss",
    "get_equilibrium_source",
    "init_state",
    "log_choice_probabilities",
    "market",
    "paper_knobs",
    "predicted_labels",
    "round_step",
    "setting1",
    "setting2",
    "setting3",
    "simulate_equilibrium",
    "social_loss",
    "stack_data",
    "validate_equilibrium",
    "with_bias",
]
