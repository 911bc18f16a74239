"""Sizes as people write them in the configuration: ``"20 TB"``, ``"500GiB"`` or a number of bytes."""

from __future__ import annotations

import re
from typing import Any

from pacs.errors import ConfigError


def parse_size(value: Any, where: str) -> int | None:
    """Parse ``"20 TB"``, ``"500GiB"``, or an int of bytes; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a size, got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]i?B|B)?\s*", str(value), re.IGNORECASE)
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a size (e.g. 500 GB, 20 TiB)")
    number, unit = float(m.group(1)), (m.group(2) or "B").upper()
    powers = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50}
    return int(number * powers[unit])
