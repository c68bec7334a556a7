"""The results directory: a manifest and tidy Parquet tables, written atomically per chunk.

    DIR/manifest.json              config, config hash, versions, git sha, provenance, timings
    DIR/learners/<chunk>.parquet   run_id, step, learner, per-learner metrics
    DIR/market/<chunk>.parquet     run_id, step, market-wide metrics
    DIR/runs/<chunk>.parquet       run_id, group, knobs, static values, status, reason, …

A chunk's ``runs`` part is written last and marks its runs finished; parts are written to a
temporary name and renamed, so a killed sweep leaves either a whole chunk or none of it.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from userchoice.atomic import atomic_write

TABLES = ("runs", "learners", "market")
MANIFEST = "manifest.json"


def atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=_jsonable)
    atomic_write(path, lambda out: out.write(text.encode()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda out: frame.to_parquet(out, index=False))


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import jax
    import sklearn

    from userchoice.version import __version__

    return {"userchoice": __version__, "python": platform.python_version(),
            "jax": jax.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "backend": jax.default_backend()}


@dataclass
class ResultsDir:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a results directory (no {MANIFEST})")
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def write_chunk(self, key: str, runs: pd.DataFrame, learners: pd.DataFrame,
                    market: pd.DataFrame) -> None:
        atomic_write_parquet(self.path / "learners" / f"{key}.parquet", learners)
        atomic_write_parquet(self.path / "market" / f"{key}.parquet", market)
        atomic_write_parquet(self.path / "runs" / f"{key}.parquet", runs)  # commit marker

    def remove_temporary(self) -> int:
        """Delete half-written parts (``.name.parquet.XXXX``) a killed sweep left behind."""
        removed = 0
        for name in TABLES:
            for stale in (self.path / name).glob(".*.parquet.*"):
                stale.unlink(missing_ok=True)
                removed += 1
        return removed

    def failed_chunks(self) -> set[str]:
        """Chunks whose every run failed (an exception, not divergence): to be retried."""
        folder = self.path / "runs"
        failed = set()
        for part in folder.glob("*.parquet") if folder.is_dir() else []:
            status = pd.read_parquet(part, columns=["status"])["status"]
            if len(status) and (status == "failed").all():
                failed.add(part.stem)
        return failed

    def finished_chunks(self) -> set[str]:
        folder = self.path / "runs"
        return {p.stem for p in folder.glob("*.parquet")} if folder.is_dir() else set()

    def joined(self, name: str = "learners") -> pd.DataFrame:
        """``learners`` or ``market`` rows with their run's knobs, static values and status."""
        frame, runs = self.table(name), self.table("runs")
        if not len(frame):
            return frame
        keep = [c for c in runs.columns if c not in ("chunk", "seconds")]
        return frame.merge(runs[keep], on="run_id", how="left", validate="many_to_one")

    def table(self, name: str) -> pd.DataFrame:
        """One table, rows of committed chunks only, in a canonical order."""
        if name not in TABLES:
            raise ValueError(f"table must be one of {TABLES}, got {name!r}")
        done = self.finished_chunks()
        parts = [pd.read_parquet(p) for p in sorted((self.path / name).glob("*.parquet"))
                 if p.stem in done]
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True)
        order = [c for c in ("group", "run_id", "step", "learner") if c in frame.columns]
        return frame.sort_values(order, kind="stable").reset_index(drop=True)
