"""The one grouped mean ± standard error of the package (pandas does the grouping).

At the bottom of the layers so the engine (``SimulationResult.summarise``), the results
analysis, figures, report, summary and demo all use this one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported on first use: the engine need not load it
    import pandas as pd

STAT_COLUMNS = ("mean", "sem", "std", "n")


def seed_stats(frame: pd.DataFrame, keys: Sequence[str], value: str, *,
               sort: bool = True) -> pd.DataFrame:
    """Mean, standard error (ddof 1; NaN for one value), standard deviation (ddof 1) and count
    of the non-missing ``value`` per combination of ``keys``.

    Columns: ``keys``, then ``mean``, ``sem``, ``std``, ``n`` (int). Groups without a value are
    dropped. Rows are sorted by ``keys`` (``sort=False``: in first-seen order). Values are
    averaged in float64.
    """
    import pandas as pd

    keys = list(keys)
    columns = [*keys, *STAT_COLUMNS]
    if not len(frame) or value not in frame:
        return pd.DataFrame(columns=columns)
    values = frame[value].astype(float)
    if not keys:
        stats = pd.DataFrame([{"mean": values.mean(), "sem": values.sem(),
                               "std": values.std(), "n": int(values.count())}])
    else:
        stats = (values.groupby([frame[k] for k in keys], dropna=False, sort=sort)
                 .agg(mean="mean", sem="sem", std="std", n="count").reset_index())
    stats = stats[stats["n"] > 0].reset_index(drop=True)
    stats["n"] = stats["n"].astype(int)
    return stats[columns]
