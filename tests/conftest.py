"""Tiny markets shared by the tests (fast to build, small enough for the NumPy reference)."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from userchoice.data.dataset import Dataset
from userchoice.engine.compile_cache import clear_programs
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.runner import local_runner, run_experiment
from userchoice.market import Market
from userchoice.preferences import Preferences
from userchoice.synthetic import gaussian_mixture_market
from userchoice.theory import trap_market

# Real datasets staged beside the checkout (../shared/data); never part of the repository.
SHARED_DATA = Path(os.environ.get("USERCHOICE_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))
# The shipped configs name their data as a user's data directory holds it
# (${DATA_DIR}/<dataset>/<file as `data fetch` / `data import` write it>): the staged files,
# placed under those names in a temporary data directory ($USERCHOICE_DATA for the session).
STAGED_AS = {
    "amazon/reviews_flat.jsonl.gz":
        "amazon_reviews/amazon2023_ucsd_user_histories/reviews_flat.jsonl.gz",
}


def _ml100k_zip(target: Path) -> None:
    """``ml-100k.zip`` as `data fetch movielens --variant ml-100k` writes it, holding the staged
    ``u.data`` (the original bytes: its sha256 is the one the fetch plan pins)."""
    import gzip
    import zipfile

    source = SHARED_DATA / "movielens" / "ml-100k" / "u.data.gz"
    if source.is_file():
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("ml-100k/u.data", gzip.decompress(source.read_bytes()))


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_programs() -> Iterator[None]:
    """After each test module, drop the compiled programs it left (each holds hundreds of
    memory maps): one process running the whole suite otherwise reaches the kernel's map
    limit and crashes. The next module loads a shape it shares from the disk cache."""
    yield
    clear_programs()
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def _wide_console() -> Iterator[None]:
    """Rich wraps at 80 columns when its output is not a terminal, so a message holding a
    temporary path (whose length depends on the runner: pytest-xdist adds a folder) would
    split across lines unpredictably; 200 columns for every test, as ``terminal_width=200``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "200")
        yield


@pytest.fixture(scope="session", autouse=True)
def user_data_dir(tmp_path_factory) -> Iterator[Path]:
    """A data directory laid out like a user's (symlinks to ../shared/data, where staged), set
    as $USERCHOICE_DATA for every test: the shipped configs' ${DATA_DIR} paths resolve here, and
    no test reads or writes the real ~/.local/share/userchoice."""
    root = tmp_path_factory.mktemp("userchoice-data")
    for name, staged in STAGED_AS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if (SHARED_DATA / staged).is_file():
            (root / name).symlink_to(SHARED_DATA / staged)
    (root / "movielens").mkdir(exist_ok=True)
    _ml100k_zip(root / "movielens" / "ml-100k.zip")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("USERCHOICE_DATA", str(root))
        yield root


def random_preferences(rng: np.random.Generator, n_users: int, n_learners: int) -> Preferences:
    return Preferences.from_scores(rng.random((n_users, n_learners)))


def regression_market(n_learners: int = 3, n_users: int = 160, dim: int = 3,
                      n_outputs: int | None = None, seed: int = 0) -> Market:
    """Linear-regression users (scalar or masked multi-output labels) with random rankings."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_users, dim))
    if n_outputs is None:
        y = x @ rng.standard_normal(dim) + 0.1 * rng.standard_normal(n_users)
        w = None
    else:
        y = rng.integers(1, 6, (n_users, n_outputs)).astype(float)
        w = (rng.random((n_users, n_outputs)) < 0.5).astype(float)
        y *= w  # unrated entries are stored as 0, as in the MovieLens matrix
    test = np.arange(n_users) % 4 == 0
    ds = Dataset(x[~test], y[~test], x[test], y[test],
                 None if w is None else w[~test], None if w is None else w[test])
    return Market(ds, random_preferences(rng, int((~test).sum()), n_learners),
                  random_preferences(rng, int(test.sum()), n_learners))


# The tiny trap sweep of the experiment and resume tests (one set of compiled shapes: 12 runs).
TINY_TRAP: dict = {
    "name": "tiny_trap",
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 200, "seed": 3}},
    "market": {"n_learners": 2},
    "learner": {"family": "squared"},
    "init": {"kind": "erm"},
    "engine": {"batch_size": 10, "steps": 60, "eval_every": 20},
    "knobs": {"seed": 3, "tau": 0.7, "lam": [0.0, 0.1], "eta": [0.02, 0.05]},
}


@pytest.fixture(scope="session")
def mixture_market() -> Market:
    return gaussian_mixture_market(n_learners=3, n_users=400, seed=1)


@pytest.fixture(scope="session")
def small_trap() -> Market:
    return trap_market(gap=3.0, n_users=400, seed=2)


# ------------------------------------------------------------------ results directories
# Built once per session by running tiny configs through run_experiment (figures, report,
# analysis): a squared-loss trap sweep (p × κ × η grid, an N_probe static grid, runs that diverge
# at a huge η and a static group whose chunks are made to fail), a two-prober logistic mixture
# sweep over p, and a one-p sweep: the mixture sweep's p = 0 runs alone (a run's numbers depend
# only on its config and seed, so this is what running p = 0 alone writes).

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DESCRIPTION = "Trap sweep <script>alert('x')</script> & friends"
FAILED_NPROBE = 50
INJECTED = "RuntimeError: injected <failure> for the report"

TRAP = {
    "name": "trap_tiny", "description": DESCRIPTION,
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 600}},
    "market": {"n_learners": 2}, "learner": {"family": "squared"}, "init": {"kind": "erm"},
    "engine": {"batch_size": 32, "steps": 200, "eval_every": 50},
    "probing": {"probers": [0], "n_probe": 20, "probe_batch": 16},
    "knobs": {"seed": 2, "tau": 0.7, "p": [0, 1], "kappa": [0, 0.4], "eta": [0.02, 1000.0]},
    "static_grid": {"probing.n_probe": [20, 100, FAILED_NPROBE]},
}
MIX = {
    "name": "mix_tiny",
    "data": {"dataset": "mixture", "options": {"n_users": 800}},
    "market": {"n_learners": 3}, "learner": {"family": "logistic"}, "init": {"kind": "random"},
    "engine": {"batch_size": 32, "steps": 200, "eval_every": 50},
    "probing": {"probers": [0, 1], "n_probe": 50, "probe_batch": 16},
    "knobs": {"seed": 2, "tau": 0.7, "p": [0, 0.5], "eta": 0.1},
}


def failing_runner(group_to_fail: int):
    """The local executor, except that every chunk of one group fails."""
    inner = local_runner(workers=2)

    def run(plan, jobs, sizes):
        keep = [j for j in jobs if j.group != group_to_fail]
        for job in jobs:
            if job.group == group_to_fail:
                yield job, None, INJECTED, 0.0
        yield from inner(plan, keep, sizes)

    return run


@cache
def build_results(base: Path) -> dict[str, Path]:
    """The session's results directories (built once)."""
    out = {}
    trap = config_from_dict(TRAP)
    out["trap"] = base / "trap"
    run_experiment(trap, out["trap"], runner=failing_runner(2))
    out["mix"] = base / "mix"
    run_experiment(config_from_dict(MIX), out["mix"])
    out["bad"] = p0_only(out["mix"], base / "bad")
    return out


def p0_only(source: Path, target: Path) -> Path:
    """A copy of a results directory holding only its p = 0 runs."""
    runs_by_part = {}
    for part in (source / "runs").glob("*.parquet"):
        runs = pd.read_parquet(part)
        runs_by_part[part.name] = runs[runs["p"] == 0]
    keep = set(pd.concat(runs_by_part.values())["run_id"])
    for table in ("runs", "learners", "market"):
        (target / table).mkdir(parents=True)
        for part in (source / table).glob("*.parquet"):
            frame = pd.read_parquet(part)
            frame[frame["run_id"].isin(keep)].to_parquet(target / table / part.name, index=False)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["name"] = "mix_p0_tiny"
    manifest["n_runs"] = len(keep)
    manifest["config"]["knobs"]["p"] = 0.0
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture(scope="session")
def results(tmp_path_factory) -> dict[str, Path]:
    return build_results(tmp_path_factory.getbasetemp() / "results")


def edited_config(raw: dict, **changes):
    """``config_from_dict`` of a deep copy of ``raw`` with dotted-path ``changes`` (a value of
    None removes the field), for tests of one config's variants."""
    import copy

    from userchoice.experiments.config import config_from_dict

    raw = copy.deepcopy(raw)
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return config_from_dict(raw)
