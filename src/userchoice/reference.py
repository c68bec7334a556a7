"""Plain NumPy MSGD / MSGD-P for one run, step by step, written to be read.

This is the specification in executable form and the oracle the engine is tested against:
gradients are derived by hand (no autodiff), learners are updated in an explicit loop, and
all randomness comes from ``RunDraws`` (``engine.predraw``), so feeding it the engine's draws
must reproduce the engine's numbers to floating-point tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from userchoice.engine import EngineSpec, Knobs, RunDraws
from userchoice.families import MLP, Logistic, MaskedMultiSquared, Squared
from userchoice.market import Market

# ----------------------------------------------------------------------------- one learner


def sigmoid(s: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * s))  # no overflow for large |s|


def score(family: Any, theta: Any, x: np.ndarray) -> np.ndarray:
    """One learner's scores on users x: [B] (or [B, m] for the multi-output family)."""
    if isinstance(family, Logistic | Squared):
        return x @ theta
    if isinstance(family, MaskedMultiSquared):
        return x @ theta.T
    if isinstance(family, MLP):
        hidden = np.maximum(x @ theta["w1"] + theta["b1"], 0.0)
        return hidden @ theta["w2"] + theta["b2"]
    raise TypeError(f"unknown family {family!r}")


def loss(family: Any, s: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Reported per-user loss."""
    if isinstance(family, Logistic | MLP):
        return np.logaddexp(0.0, s) - y * s
    if isinstance(family, Squared):
        return (s - y) ** 2
    sq = (s - y) ** 2 if w is None else w * (s - y) ** 2
    return sq.sum(axis=-1) / family.n_outputs


def choosing_loss(spec: Any, s: np.ndarray, y: np.ndarray, reported: np.ndarray
                  ) -> np.ndarray:
    """What users choose by: the reported loss, or the spec's choice loss of binary scores s
    (the built-in ones, written out; a plug-in loss has no NumPy twin here)."""
    if spec.choice_loss is None:
        return reported
    name = getattr(spec.choice_loss, "name", spec.choice_loss)
    z = np.where(y == 1, 1.0, -1.0) * s / spec.loss_temperature  # (2y − 1) f / T
    if name == "soft01":
        return sigmoid(-z)
    if name == "logistic":
        return np.logaddexp(0.0, -z)
    if name == "zero_one":
        return ((s > 0).astype(int) != y).astype(float)
    raise NotImplementedError(f"the reference has no NumPy form of choice loss {name!r}")


def weighted_gradient(
    family: Any, theta: Any, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, weights: np.ndarray
) -> Any:
    """∇θ Σ_b weights[b] · train_scale · loss(θ; x_b, y_b), derived by hand."""
    s = score(family, theta, x)
    if isinstance(family, Logistic):
        return x.T @ (weights * (sigmoid(s) - y))
    if isinstance(family, Squared):
        return x.T @ (weights * 2.0 * (s - y))
    if isinstance(family, MaskedMultiSquared):
        residual = s - y if w is None else w * (s - y)  # [B, m]
        per_user = (2.0 / family.n_outputs) * family.train_scale * residual
        return (weights[:, None] * per_user).T @ x  # [m, d]
    if isinstance(family, MLP):
        pre = x @ theta["w1"] + theta["b1"]
        hidden = np.maximum(pre, 0.0)
        d_score = weights * (sigmoid(s) - y)  # [B]
        d_hidden = np.outer(d_score, theta["w2"]) * (pre > 0)  # [B, h]
        return {
            "w1": x.T @ d_hidden,
            "b1": d_hidden.sum(axis=0),
            "w2": hidden.T @ d_score,
            "b2": d_score.sum(),
        }
    raise TypeError(f"unknown family {family!r}")


def pseudo_label(family: Any, s: np.ndarray) -> np.ndarray:
    if isinstance(family, Logistic | MLP):
        return (s > 0).astype(float)
    return s


def correct(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((s > 0) == (y > 0.5)).astype(float)


# ----------------------------------------------------------------- parameters as a list


def unstack(theta: Any, n: int) -> list[Any]:
    """Engine parameters (learner axis first) → a list with one entry per learner."""
    if isinstance(theta, dict):
        return [{k: np.array(v[i], dtype=float) for k, v in theta.items()} for i in range(n)]
    return [np.array(theta[i], dtype=float) for i in range(n)]


def stack(learners: list[Any]) -> Any:
    if isinstance(learners[0], dict):
        return {k: np.stack([p[k] for p in learners]) for k in learners[0]}
    return np.stack(learners)


def apply(f: Any, *params: Any) -> Any:
    """f applied leaf-wise to one learner's parameters (an array or a dict of arrays)."""
    if isinstance(params[0], dict):
        return {k: f(*(p[k] for p in params)) for k in params[0]}
    return f(*params)


def sgd_step(theta: Any, grad: Any, lr: float, lam: float) -> Any:
    """θ ← θ − η (g + λθ): regularisation is added after the probing mix."""
    return apply(lambda th, g: th - lr * (g + lam * th), theta, grad)


def squared_distance(a: Any, b: Any) -> float:
    if isinstance(a, dict):
        return float(sum(np.sum((a[k] - b[k]) ** 2) for k in a))
    return float(np.sum((a - b) ** 2))


def is_finite(theta: Any) -> bool:
    if isinstance(theta, dict):
        return all(np.all(np.isfinite(v)) for v in theta.values())
    return bool(np.all(np.isfinite(theta)))


# ------------------------------------------------------------------------ the market


def choose(
    rule: str, losses: np.ndarray, favourite: np.ndarray, rank: np.ndarray, draws: Any, k: dict
) -> np.ndarray:
    """losses [B, n] → chosen learner per user."""
    n = losses.shape[1]
    best = np.argmin(losses, axis=1)  # first minimum: ties go to the lowest index
    if rule == "tau_mixture":
        return np.where(draws.u < k["tau"], favourite, best)
    if rule == "argmin":
        return best
    if rule == "zeta_random":
        uniform_pick = np.minimum((draws.v * n).astype(int), n - 1)
        return np.where(draws.u < k["zeta"], uniform_pick, best)
    if rule == "logit":
        return np.argmax(-losses / k["temperature"] + np.log(k["prior"]) + draws.gumbel, axis=1)
    if rule == "additive_rank":
        return np.argmin(losses + k["tau"] * rank, axis=1)
    raise ValueError(rule)


def choice_probabilities(
    rule: str, losses: np.ndarray, favourite: np.ndarray, rank: np.ndarray, k: dict
) -> np.ndarray:
    n = losses.shape[1]
    eye = np.eye(n)
    best = eye[np.argmin(losses, axis=1)]
    if rule == "tau_mixture":
        return k["tau"] * eye[favourite] + (1 - k["tau"]) * best
    if rule == "argmin":
        return best
    if rule == "zeta_random":
        return k["zeta"] / n + (1 - k["zeta"]) * best
    if rule == "logit":
        logits = -losses / k["temperature"] + np.log(k["prior"])
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
    if rule == "additive_rank":
        return eye[np.argmin(losses + k["tau"] * rank, axis=1)]
    raise ValueError(rule)


def learning_rate(schedule: str, eta: float, t: int) -> float:
    return {"constant": eta, "inv_sqrt": eta / np.sqrt(t + 1.0), "inv": eta / (t + 1.0)}[schedule]


@dataclass
class ReferenceResult:
    eval_steps: np.ndarray
    metrics: dict[str, np.ndarray]  # [E, ...] for the single run
    diverged_step: int
    final_params: Any
    final_update_all: Any


def _knob_dict(knobs: Knobs) -> dict[str, Any]:
    out = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in knobs._asdict().items()
           if k != "prior"}
    out["prior"] = np.asarray(knobs.prior, dtype=float).reshape(-1)
    return out


def run_reference(
    market: Market, spec: EngineSpec, knobs: Knobs, draws: RunDraws
) -> ReferenceResult:
    """One run of MSGD / MSGD-P with the engine's random inputs ``draws``."""
    family, n, k = spec.family, spec.n_learners, _knob_dict(knobs)
    ds = market.dataset
    x, y = np.asarray(ds.x_train, float), np.asarray(ds.y_train, float)
    w = None if ds.w_train is None else np.asarray(ds.w_train, float)
    fav, rank = market.preferences_train.favourite, market.preferences_train.rank.astype(float)

    theta = unstack(draws.theta0, n)
    theta0 = unstack(draws.theta0, n)
    theta_ua = unstack(draws.theta0, n) if spec.update_all else None
    probing = spec.probing

    # Probe sets: covariates of N_probe training users per prober, labelled by a source.
    if probing is not None:
        probe_users = draws.probe.users  # [|S|, N_probe]
        probe_x = x[probe_users]
        probe_w = None if w is None else w[probe_users]
        if probing.per_user_source:
            intended = fav[probe_users] if probing.source == "preferred" else np.full(
                probe_users.shape, probing.leader)
            other = np.minimum((draws.probe.noise_pick * (n - 1)).astype(int), n - 2)
            other = other + (other >= intended)
            source = np.where(draws.probe.noise_coin < k["kappa"], other, intended)
        else:
            group = list(range(n)) if probing.source == "median" else list(probing.subset)
            source = None

        def label_probe_sets(params: list[Any]) -> np.ndarray:
            labels = []
            for s_idx in range(len(probing.probers)):
                scores = np.stack([score(family, params[j], probe_x[s_idx]) for j in range(n)])
                if source is None:
                    chosen = np.median(scores[group], axis=0)
                else:
                    chosen = scores[source[s_idx], np.arange(probing.n_probe)]
                labels.append(pseudo_label(family, chosen))
            return np.stack(labels)

        probe_labels = label_probe_sets(theta)

    path = np.zeros(n)  # Σ_s ‖θ_{s+1} − θ_s‖ per learner

    def evaluate(block_share, block_local, block_chosen, block_steps) -> dict[str, np.ndarray]:
        xt, yt = np.asarray(ds.x_test, float), np.asarray(ds.y_test, float)
        wt = None if ds.w_test is None else np.asarray(ds.w_test, float)
        out: dict[str, Any] = {}
        scores = np.stack([score(family, theta[i], xt) for i in range(n)])
        losses = np.stack([loss(family, scores[i], yt, wt) for i in range(n)])  # [n, Nt]
        out["test_loss"] = losses.mean(axis=1)
        classifier = family.task == "classification"
        if classifier:
            out["test_accuracy"] = np.array([correct(scores[i], yt).mean() for i in range(n)])
        ens = np.median(scores, axis=0)
        out["ensemble_test_loss"] = loss(family, ens, yt, wt).mean()
        if classifier:
            out["ensemble_test_accuracy"] = correct(ens, yt).mean()
        if spec.update_all:
            ua = [score(family, theta_ua[i], xt) for i in range(n)]
            out["update_all_test_loss"] = np.array([loss(family, s, yt, wt).mean() for s in ua])
            if classifier:
                out["update_all_test_accuracy"] = np.array([correct(s, yt).mean() for s in ua])
        by = np.stack([choosing_loss(spec, scores[i], yt, losses[i]) for i in range(n)])
        probs = choice_probabilities(spec.choice, by.T, market.preferences_test.favourite,
                                     market.preferences_test.rank.astype(float), k)
        out["market_share"] = probs.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["local_loss"] = (probs * losses.T).sum(axis=0) / probs.sum(axis=0)
            out["batch_share"] = block_share / block_steps
            out["batch_local_loss"] = block_local / block_chosen
        out["potential"] = (probs * losses.T).sum(axis=1).mean()
        out["distance_to_init"] = np.sqrt([squared_distance(theta[i], theta0[i])
                                           for i in range(n)])
        # Su & Dean: the ζ-potential (of the learners and of the update-all copies), the
        # accuracy of each test user's lowest-loss learner, the path length so far.
        if spec.choice == "zeta_random":
            out["zeta_potential"] = ((1 - k["zeta"]) * losses.min(axis=0).mean()
                                     + k["zeta"] * losses.mean())
            if spec.update_all:
                ua_losses = np.stack([loss(family, s, yt, wt) for s in ua])
                out["update_all_zeta_potential"] = ((1 - k["zeta"]) * ua_losses.min(axis=0).mean()
                                                    + k["zeta"] * ua_losses.mean())
        if classifier:
            best_scores = scores[np.argmin(losses, axis=0), np.arange(losses.shape[1])]
            out["oracle_choice_accuracy"] = correct(best_scores, yt).mean()
        out["path_length"] = path.copy()
        if probing is not None:
            risk = np.array([
                loss(family, score(family, theta[i], probe_x[s_idx]), probe_labels[s_idx],
                     None if probe_w is None else probe_w[s_idx]).mean()
                for s_idx, i in enumerate(probing.probers)
            ])
            out["probe_risk"] = risk
            out["psi"] = out["potential"] + k["p"] * risk.sum()
        return {name: value for name, value in out.items() if name in spec.metrics}

    zeros = np.zeros(n)
    history = [evaluate(zeros, zeros, zeros, 0.0)]
    share, local, chosen_total, steps_in_block = zeros.copy(), zeros.copy(), zeros.copy(), 0
    diverged = -1
    eval_points = set(spec.eval_steps.tolist())

    for t in range(spec.steps):
        # 1. A batch of users arrives and each picks a learner.
        users = draws.steps.batch[t]
        xb, yb = x[users], y[users]
        wb = None if w is None else w[users]
        scores_b = [score(family, theta[i], xb) for i in range(n)]
        losses = np.stack([loss(family, scores_b[i], yb, wb) for i in range(n)], axis=1)  # [B, n]
        by = np.stack([choosing_loss(spec, scores_b[i], yb, losses[:, i]) for i in range(n)],
                      axis=1)
        choice = choose(spec.choice, by, fav[users], rank[users], _StepChoice(draws, t), k)

        # 2. Each learner's data gradient: mean over the users who chose it (0 if none).
        lr = learning_rate(spec.schedule, k["eta"], t)
        new_theta = []
        for i in range(n):
            mine = (choice == i).astype(float)
            if spec.normalisation == "mean":
                weights = mine / max(mine.sum(), 1.0)
            else:
                weights = mine / spec.batch_size
            grad = weighted_gradient(family, theta[i], xb, yb, wb, weights)

            # 3. Probers mix in the mean gradient on P pseudo-labelled probe points.
            if probing is not None and i in probing.probers:
                s_idx = probing.probers.index(i)
                picks = draws.steps.probe[t, s_idx]
                px, py = probe_x[s_idx, picks], probe_labels[s_idx, picks]
                pw = None if probe_w is None else probe_w[s_idx, picks]
                probe_grad = weighted_gradient(family, theta[i], px, py, pw,
                                               np.full(len(picks), 1.0 / len(picks)))
                grad = apply(lambda g, h: (g + k["p"] * h) / (1.0 + k["p"]), grad, probe_grad)

            # 4. Regularise (after the mix) and step.
            new_theta.append(sgd_step(theta[i], grad, lr, k["lam"]))

        # 5. Update-all copies step on the whole batch.
        if spec.update_all:
            uniform = np.full(spec.batch_size, 1.0 / spec.batch_size)
            for i in range(n):
                grad = weighted_gradient(family, theta_ua[i], xb, yb, wb, uniform)
                theta_ua[i] = sgd_step(theta_ua[i], grad, lr, k["lam"])
        path += [np.sqrt(squared_distance(new_theta[i], theta[i])) for i in range(n)]
        theta = new_theta

        # 6. Online probing: re-label the probe sets from current peers every k steps.
        if probing is not None and probing.refresh_every and (t + 1) % probing.refresh_every == 0:
            probe_labels = label_probe_sets(theta)

        everything = theta + (theta_ua or [])
        if diverged < 0 and not all(is_finite(p) for p in everything):
            diverged = t
        counts = np.bincount(choice, minlength=n).astype(float)
        share += counts / spec.batch_size
        local += np.array([losses[choice == i, i].sum() for i in range(n)])
        chosen_total += counts
        steps_in_block += 1
        if t + 1 in eval_points:
            history.append(evaluate(share, local, chosen_total, float(steps_in_block)))
            share, local, chosen_total, steps_in_block = zeros.copy(), zeros.copy(), zeros.copy(), 0

    metrics = {name: np.stack([h[name] for h in history]) for name in history[0]}
    return ReferenceResult(
        eval_steps=spec.eval_steps,
        metrics=metrics,
        diverged_step=diverged,
        final_params=stack(theta),
        final_update_all=None if theta_ua is None else stack(theta_ua),
    )


class _StepChoice:
    """Step t's choice draws (u, v, gumbel) viewed from the stacked ``RunDraws``."""

    def __init__(self, draws: RunDraws, t: int) -> None:
        choice = draws.steps.choice
        self.u, self.v, self.gumbel = (None if a is None else a[t] for a in choice)
