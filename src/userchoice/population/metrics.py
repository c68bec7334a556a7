"""The population dynamics' metrics, registered in THE metric table (``userchoice.metrics``)
with ``dynamics=("population",)``; each computes from a :class:`PopulationEvaluation`.

Kinds: ``learner`` [max_n] (NaN for learners not yet in the market), ``market`` [],
``group`` [G], ``allocation`` [max_n, G] (NaN rows for learners not yet in the market).
Reported risks weight groups by their masses β_j, whatever the retraining ``weighting``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from userchoice.metrics import register
from userchoice.population.arrays import GroupArrays, MarketState, quad, risks

POPULATION = ("population",)
SEGMENTED = 0.99  # a group is served by one learner when that learner holds > 99 % of it


def probing(spec: Any) -> bool:
    return spec.probing is not None


class PopulationEvaluation:
    """One run at one point: ``spec``, ``arrays`` (the groups), ``market`` (a
    ``MarketState``) and ``knobs`` (that run's). Shared quantities are computed once, on first
    use."""

    def __init__(self, spec: Any, arrays: GroupArrays, market: MarketState, knobs: Any) -> None:
        self.spec, self.arrays, self.market, self.knobs = spec, arrays, market, knobs

    @functools.cached_property
    def risks(self) -> jax.Array:
        """R_j(θ_i), [N, G]."""
        return risks(self.arrays, self.market.theta)

    @functools.cached_property
    def mass(self) -> jax.Array:
        """β_j α_ij, [N, G]: the mass of group j's users at learner i."""
        return self.market.alpha * self.arrays.beta[None, :]

    @functools.cached_property
    def learner_mass(self) -> jax.Array:
        """Σ_j β_j α_ij, [N]."""
        return self.mass.sum(axis=1)

    @functools.cached_property
    def total_risk(self) -> jax.Array:
        return jnp.sum(self.mass * self.risks)

    @functools.cached_property
    def group_risk(self) -> jax.Array:
        """Σ_i α_ij R_j(θ_i): the risk group j's users experience, [G]."""
        return jnp.sum(self.market.alpha * self.risks, axis=0)

    def per_learner(self, values: jax.Array) -> jax.Array:
        """NaN for learners not yet in the market."""
        return jnp.where(self.market.active, values, jnp.nan)


@register("total_risk", kind="market", label="total risk", dynamics=POPULATION,
          meaning="Σ_ij β_j α_ij R_j(θ_i): the risk summed over the whole population")
def _total_risk(ev: PopulationEvaluation) -> jax.Array:
    return ev.total_risk


@register("average_risk", kind="market", label="average risk", dynamics=POPULATION,
          meaning="total risk / Σ_j β_j: the risk of an average user")
def _average_risk(ev: PopulationEvaluation) -> jax.Array:
    return ev.total_risk / ev.arrays.beta.sum()


@register("learner_risk", kind="learner", label="learner risk", dynamics=POPULATION,
          meaning="Σ_j β_j α_ij R_j(θ_i) / Σ_j β_j α_ij: the mean risk of the learner's users "
                  "(NaN without users)")
def _learner_risk(ev: PopulationEvaluation) -> jax.Array:
    own = jnp.sum(ev.mass * ev.risks, axis=1)
    return ev.per_learner(jnp.where(ev.learner_mass > 0, own / ev.learner_mass, jnp.nan))


@register("global_risk", kind="learner", label="global risk", dynamics=POPULATION,
          meaning="Σ_j β_j R_j(θ_i) / Σ_j β_j: the learner's risk over the whole population, "
                  "its users or not (the global performance of MSGD's test loss)")
def _global_risk(ev: PopulationEvaluation) -> jax.Array:
    return ev.per_learner(ev.risks @ ev.arrays.beta / ev.arrays.beta.sum())


@register("share", kind="learner", label="population share", dynamics=POPULATION,
          higher_is_better=True,
          meaning="Σ_j β_j α_ij / Σ_j β_j: the learner's share of the population")
def _share(ev: PopulationEvaluation) -> jax.Array:
    return ev.per_learner(ev.learner_mass / ev.arrays.beta.sum())


@register("group_risk", kind="group", label="group risk", dynamics=POPULATION,
          meaning="Σ_i α_ij R_j(θ_i): the risk group j's users experience")
def _group_risk(ev: PopulationEvaluation) -> jax.Array:
    return ev.group_risk


@register("relative_excess_risk", kind="group", label="relative excess risk (%)",
          dynamics=POPULATION,
          meaning="100·(R_j / min_θ R_j − 1): how much worse group j fares than with its own "
                  "best model; for a group whose minimal risk is 0: 0 at its optimum, else NaN")
def _relative_excess_risk(ev: PopulationEvaluation) -> jax.Array:
    floor = ev.arrays.floor
    excess = jnp.maximum(ev.group_risk - floor, 0.0)  # rounding can dip below the minimum
    tiny = jnp.finfo(floor.dtype).eps * jnp.maximum(1.0, jnp.abs(ev.group_risk))
    relative = 100.0 * excess / jnp.where(floor > 0, floor, 1.0)
    return jnp.where(floor > 0, relative, jnp.where(excess <= tiny, 0.0, jnp.nan))


@register("segmentation", kind="market", label="segmentation", dynamics=POPULATION,
          higher_is_better=False,
          meaning="share of groups served by one learner (max_i α_ij > 0.99)")
def _segmentation(ev: PopulationEvaluation) -> jax.Array:
    return jnp.mean(ev.market.alpha.max(axis=0) > SEGMENTED).astype(ev.market.alpha.dtype)


@register("n_learners", kind="market", label="learners", dynamics=POPULATION,
          meaning="learners in the market (market entry adds them)")
def _n_learners(ev: PopulationEvaluation) -> jax.Array:
    return ev.market.active.sum().astype(ev.market.alpha.dtype)


@register("allocation", kind="allocation", label="allocation α", dynamics=POPULATION,
          meaning="α_ij: the share of group j's users at learner i")
def _allocation(ev: PopulationEvaluation) -> jax.Array:
    return jnp.where(ev.market.active[:, None], ev.market.alpha, jnp.nan)


@register("population_probe_risk", kind="learner", applies=probing, label="probe risk",
          dynamics=POPULATION,
          meaning="Σ_j (β_j/Σβ)(θ_i − s_ij)ᵀA_j(θ_i − s_ij): the prober's risk against its "
                  "pseudo-labels (logistic groups: the mean KL divergence of its predicted "
                  "probabilities from the source's on group j's rows); NaN for non-probers "
                  "and before probing starts")
def _population_probe_risk(ev: PopulationEvaluation) -> jax.Array:
    return probe_risks(ev.spec, ev.arrays, ev.market)


def probe_risks(spec: Any, arrays: GroupArrays, market: MarketState) -> jax.Array:
    """Each learner's probe risk, [N] (NaN where it does not probe)."""
    n = market.theta.shape[0]
    probers = jnp.asarray(spec.probing.probers)
    weights = arrays.beta / arrays.beta.sum()
    if arrays.logistic:  # KL(σ(a) ‖ σ(z)) = softplus(z) − softplus(a) − σ(a)(z − a) per row
        z = market.theta[probers] @ arrays.x.T  # [|S|, R]
        a = jnp.sum(jnp.einsum("rd,sgd->srg", arrays.x, market.labels) * arrays.member, -1)
        kl = jax.nn.softplus(z) - jax.nn.softplus(a) - jax.nn.sigmoid(a) * (z - a)
        values = (kl @ arrays.member / arrays.counts) @ weights
    else:
        diff = market.theta[probers][:, None, :] - market.labels  # [|S|, G, d]
        values = jnp.sum(weights * quad(arrays, diff), axis=-1)
    on = market.probing_on & market.active[probers]
    return jnp.full((n,), jnp.nan, values.dtype).at[probers].set(
        jnp.where(on, values, jnp.nan))
