"""The ``capacity:`` section of the configuration: :class:`CapacitySettings` and its validation.

:func:`parse_settings` turns the raw mapping into settings (``pacs.config.load_config`` calls it
when the file is loaded); an unknown key or a bad value raises :class:`ConfigError` naming it
(``capacity.<key>: ...``). This module imports only the standard library, :mod:`pacs.errors` and
:mod:`pacs.sizes` (the configuration imports this module), so that loading
the configuration never pulls in the numerical, Arrow, SQL or plotting libraries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pacs.errors import ConfigError
from pacs.sizes import parse_size

if TYPE_CHECKING:
    pass

SETTING_KEYS = frozenset({"online_bytes", "offline_bytes", "price_per_gb_month", "currency", "forecast_months",
                          "date_basis", "source", "memory_limit"})
DATE_BASES = ("study_date", "received_at")
SOURCES = ("live", "snapshot")


@dataclass(frozen=True)
class CapacitySettings:
    """The ``capacity:`` section of the configuration."""

    online_bytes: int | None = None
    offline_bytes: int | None = None
    price_online: float | None = None
    price_offline: float | None = None
    currency: str = "USD"
    forecast_months: int = 24
    date_basis: str = "study_date"
    source: str = "live"
    memory_limit: str = "1GB"

    def price(self, tier: str) -> float | None:
        return self.price_online if tier == "online" else self.price_offline

    def capacity(self, tier: str) -> int | None:
        return self.online_bytes if tier == "online" else self.offline_bytes


def parse_settings(raw: Any) -> CapacitySettings:
    """Validate the raw ``capacity:`` mapping (None or empty: the defaults).

    An unknown key or a bad value raises :class:`ConfigError` naming it (``capacity.<key>: ...``).
    """

    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"capacity: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - SETTING_KEYS
    if unknown:
        raise ConfigError(f"capacity: unknown key(s) {sorted(unknown)}; allowed: {sorted(SETTING_KEYS)}")
    prices = _prices(raw.get("price_per_gb_month"))
    months = _forecast_months(raw.get("forecast_months", 24))
    basis = _choice(raw.get("date_basis", "study_date"), "date_basis", DATE_BASES)
    source = _choice(raw.get("source", "live"), "source", SOURCES)
    currency = _currency(raw.get("currency", "USD"))
    memory_bytes = parse_size(raw.get("memory_limit", "1GB"), "capacity.memory_limit")
    return CapacitySettings(
        online_bytes=parse_size(raw.get("online_bytes"), "capacity.online_bytes"),
        offline_bytes=parse_size(raw.get("offline_bytes"), "capacity.offline_bytes"),
        price_online=_price(prices.get("online"), "capacity.price_per_gb_month.online"),
        price_offline=_price(prices.get("offline"), "capacity.price_per_gb_month.offline"),
        currency=currency,
        forecast_months=months,
        date_basis=basis,
        source=source,
        memory_limit=f"{max(int(memory_bytes or 0) // 2**20, 64)}MiB",
    )


def _prices(value: Any) -> Mapping[str, Any]:
    prices = value or {}
    if not isinstance(prices, Mapping) or set(prices) - {"online", "offline"}:
        raise ConfigError("capacity.price_per_gb_month: expected a mapping with 'online' and/or 'offline' prices")
    return prices


def _price(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a price per GB-month >= 0, got {value!r}")
    return float(value)


def _forecast_months(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 120:
        raise ConfigError(f"capacity.forecast_months: expected an integer from 1 to 120, got {value!r}")
    return value


def _choice(value: Any, key: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"capacity.{key}: expected {' or '.join(allowed)}, got {value!r}")
    return value


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"capacity.currency: expected a currency code, got {value!r}")
    return value.strip()
