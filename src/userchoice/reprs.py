"""Short summaries as ``repr`` and as an HTML table (``_repr_html_``, shown by notebooks).

Objects holding large arrays (datasets, markets, simulation results, results directories)
describe themselves by shapes, names, what varies and timings — never by their arrays, whose
default dataclass ``repr`` ran to tens of thousands of characters. A class lists its summary
once (``_summary_rows``); both forms derive from it. A summary never raises: a failing one (a
results directory deleted under it, say) says so instead.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

MAX_VALUE = 120  # characters of one field in the text form
MAX_ITEMS = 6  # items of a list shown before "…"


def short_list(items: Iterable[Any], limit: int = MAX_ITEMS) -> str:
    """``[a, b, c, …, z] (26)``: the first items, the last, and the count when long."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return f"[{', '.join(items)}]"
    return f"[{', '.join(items[: limit - 1])}, …, {items[-1]}] ({len(items)})"


def number(value: float) -> str:
    """A count with thousands separators, or a real number to 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _clip(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SummaryRepr:
    """Mixin: ``__repr__`` and ``_repr_html_`` from ``_summary_rows()``, a list of
    (field, text) pairs. Dataclasses using it pass ``repr=False`` (their generated ``repr``
    would replace the mixin's)."""

    def _summary_rows(self) -> Sequence[tuple[str, str]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _safe_rows(self) -> Sequence[tuple[str, str]]:
        try:
            return list(self._summary_rows())
        except Exception as error:  # a repr must not raise
            return [("summary unavailable", f"{type(error).__name__}: {error}")]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_clip(value)}" for name, value in self._safe_rows())
        return f"{type(self).__name__}({fields})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'>{html.escape(_clip(value, 4 * MAX_VALUE))}</td></tr>"
            for name, value in self._safe_rows())
        return (f"<table><caption style='text-align:left'><b>{html.escape(type(self).__name__)}"
                f"</b></caption>{rows}</table>")
