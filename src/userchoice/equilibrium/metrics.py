"""The equilibrium's metrics, registered in THE metric table (``userchoice.metrics``) with
``dynamics=("equilibrium",)``; each computes from an :class:`EquilibriumEvaluation` of a run's
final profile (its equilibrium, or where ``max_rounds`` left it).

Kinds: ``learner`` [m] (one per provider), ``market`` []. Losses are the choice loss.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from userchoice.equilibrium.step import market, probe_labels, social_loss
from userchoice.metrics import register

EQUILIBRIUM = ("equilibrium",)


def probing(spec: Any) -> bool:
    return spec.probing is not None


class EquilibriumEvaluation:
    """One run's final state: ``spec``, ``data`` (``DataArrays``), ``state``
    (``EquilibriumState``), ``knobs`` (that run's) and ``bayes`` (its Bayes risk []). Shared
    quantities are computed once, on first use."""

    def __init__(self, spec: Any, data: Any, state: Any, knobs: Any, bayes: jax.Array) -> None:
        self.spec, self.data, self.state, self.knobs, self.bayes = spec, data, state, knobs, bayes

    @functools.cached_property
    def market(self) -> Any:
        return market(self.spec, self.data, self.state.theta, self.knobs)

    @functools.cached_property
    def social_loss(self) -> jax.Array:
        return social_loss(self.data, self.market)


@register("social_loss", kind="market", label="social loss", dynamics=EQUILIBRIUM,
          meaning="E_x[Σ_j P_j(x) ℓ_j(x)]: the choice loss users bear at equilibrium")
def _social_loss(ev: EquilibriumEvaluation) -> jax.Array:
    return ev.social_loss


@register("bayes_risk", kind="market", label="Bayes risk", dynamics=EQUILIBRIUM,
          meaning="the best single linear model's mean choice loss (gradient descent from a "
                  "logistic fit and random restarts)")
def _bayes_risk(ev: EquilibriumEvaluation) -> jax.Array:
    return ev.bayes


@register("equilibrium_share", kind="learner", label="equilibrium share", dynamics=EQUILIBRIUM,
          higher_is_better=True,
          meaning="S_j = E_x[P_j(x)]: the provider's market share at equilibrium")
def _equilibrium_share(ev: EquilibriumEvaluation) -> jax.Array:
    return ev.market.shares


@register("provider_loss", kind="learner", label="provider loss", dynamics=EQUILIBRIUM,
          meaning="E_x[P_j(x) ℓ_j(x)] / S_j: the provider's mean choice loss over the users who "
                  "choose it (NaN without users)")
def _provider_loss(ev: EquilibriumEvaluation) -> jax.Array:
    mk = ev.market
    own = (mk.probs * mk.losses) @ ev.data.weight
    return jnp.where(mk.shares > 0, own / jnp.where(mk.shares > 0, mk.shares, 1.0), jnp.nan)


@register("global_loss", kind="learner", label="global loss", dynamics=EQUILIBRIUM,
          meaning="E_x[ℓ_j(x)]: the provider's mean choice loss over every user, its own or "
                  "not (the global performance of MSGD's test loss)")
def _global_loss(ev: EquilibriumEvaluation) -> jax.Array:
    return ev.market.losses @ ev.data.weight


@register("rounds", kind="market", label="rounds", dynamics=EQUILIBRIUM,
          meaning="rounds of best responses run (to convergence, or max_rounds)")
def _rounds(ev: EquilibriumEvaluation) -> jax.Array:
    return ev.state.round.astype(ev.data.x.dtype)


@register("converged", kind="market", label="converged", dynamics=EQUILIBRIUM,
          higher_is_better=True,
          meaning="1 if every share moved by ≤ tol in the last round, 0 if max_rounds ran out")
def _converged(ev: EquilibriumEvaluation) -> jax.Array:
    return ev.state.converged.astype(ev.data.x.dtype)


@register("equilibrium_probe_risk", kind="learner", applies=probing, label="probe risk",
          dynamics=EQUILIBRIUM,
          meaning="the prober's mean choice loss against its source's pseudo-labels at "
                  "equilibrium (NaN for non-probers)")
def _equilibrium_probe_risk(ev: EquilibriumEvaluation) -> jax.Array:
    spec, data, mk = ev.spec, ev.data, ev.market
    values = []
    for j in spec.probing.probers:
        labels = probe_labels(spec, data, ev.state.theta, jnp.asarray(j), ev.knobs)
        own = spec.choice_object(mk.scores[j], labels, spec.loss_temperature)
        values.append(own @ data.weight)
    return jnp.full((spec.n_providers,), jnp.nan, mk.shares.dtype).at[
        jnp.asarray(spec.probing.probers)].set(jnp.stack(values))
