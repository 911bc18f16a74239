"""Units of the report: decimal GB and TB (as storage is priced), the average month, bytes as text
and the unit a chart's axis reads in."""

from __future__ import annotations

GB = 1e9
TB = 1e12
DAYS_PER_MONTH = 365.25 / 12
_UNITS = (("PB", 1e15), ("TB", TB), ("GB", GB), ("MB", 1e6), ("kB", 1e3))


def fmt_bytes(n: float | None) -> str:
    """``n`` bytes in the largest decimal unit it reaches (``"1.50 TB"``); None is a dash."""
    if n is None:
        return "–"
    n = float(n)
    for unit, size in _UNITS:
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


def axis_unit(largest: float) -> tuple[str, float]:
    """The decimal unit an axis reaching ``largest`` bytes reads in, and its size: the axis's
    values then lie between 1 and 1,000 (``("MB", 1e6)`` for 194 MB)."""
    for unit, size in _UNITS:
        if abs(largest) >= size:
            return unit, size
    return "B", 1.0
