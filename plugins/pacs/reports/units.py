"""Units of the report: decimal GB and TB (as storage is priced), the average month, bytes as text."""

from __future__ import annotations

GB = 1e9
TB = 1e12
DAYS_PER_MONTH = 365.25 / 12


def fmt_bytes(n: float | None) -> str:
    """``n`` bytes in the largest decimal unit it reaches (``"1.50 TB"``); None is a dash."""
    if n is None:
        return "–"
    n = float(n)
    for unit, size in (("PB", 1e15), ("TB", TB), ("GB", GB), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"
