"""The lifecycle policy: which studies stay in the online tier, and how they move offline.

Loaded from the configuration's ``policy`` key (a YAML file path or an inline mapping) and
validated on load: an unknown or bad key raises :class:`PolicyError` naming it. Defaults follow
the hospital's practice: the online tier keeps the last 3 years of studies by study date;
every study is kept offline permanently.

```yaml
online_retention_years: 3        # by study date (age_basis: received_at to use arrival)
age_basis: study_date
modality_overrides: {MG: 10}     # years online for studies with these modalities
hold:                            # never evicted from the online tier
  patients: [P123]
  studies: [1.2.3.4]
watermarks: {high: 0.85, low: 0.75}   # of capacity.online_bytes (or watermarks.capacity)
offline_copy: immediate          # every study gets its offline copy at the next run (on_eviction:
                                 # only when it leaves the online tier)
packing: false                   # true: one uncompressed tar per series in the offline tier
verify: checksum                 # checksum (S3 SHA-256) or readback
migrate_batch_studies: 50        # studies per parallel migrate task
recall_pin_days: 30
fixity_offline_weeks: 4          # every offline object re-hashed within this many weeks
```
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pacs.config import Config, ConfigError, parse_size
from pacs.errors import PolicyError


@dataclass(frozen=True)
class Policy:
    online_retention_years: float = 3.0
    age_basis: str = "study_date"
    modality_overrides: dict[str, float] = field(default_factory=dict)
    hold_patients: frozenset[str] = frozenset()
    hold_studies: frozenset[str] = frozenset()
    high_watermark: float | None = None
    low_watermark: float | None = None
    online_capacity_bytes: int | None = None
    offline_copy: str = "immediate"
    packing: bool = False
    verify: str = "checksum"
    migrate_batch_studies: int = 50
    recall_pin_days: int = 30
    fixity_offline_weeks: int = 4

    def retention_years(self, modalities: list[str] | tuple[str, ...] | None) -> float:
        """Years online for a study with these modalities: the longest rule that applies."""
        years = self.online_retention_years
        for m in modalities or ():
            if m in self.modality_overrides:
                years = max(years, self.modality_overrides[m])
        return years

    def online_cutoff(self, logical_date: dt.date, years: float) -> dt.date:
        """Studies dated before this day are due offline at ``logical_date``."""
        whole = math.floor(years)
        try:
            day = logical_date.replace(year=logical_date.year - whole)
        except ValueError:  # 29 February
            day = logical_date.replace(year=logical_date.year - whole, day=28)
        return day - dt.timedelta(days=round((years - whole) * 365.25))

    def as_dict(self) -> dict[str, Any]:
        return {
            "online_retention_years": self.online_retention_years,
            "age_basis": self.age_basis,
            "modality_overrides": dict(self.modality_overrides),
            "hold_patients": sorted(self.hold_patients),
            "hold_studies": sorted(self.hold_studies),
            "high_watermark": self.high_watermark,
            "low_watermark": self.low_watermark,
            "online_capacity_bytes": self.online_capacity_bytes,
            "offline_copy": self.offline_copy,
            "packing": self.packing,
            "verify": self.verify,
            "migrate_batch_studies": self.migrate_batch_studies,
            "recall_pin_days": self.recall_pin_days,
            "fixity_offline_weeks": self.fixity_offline_weeks,
        }


_KEYS = {"online_retention_years", "age_basis", "modality_overrides", "hold", "watermarks", "offline_copy",
         "packing", "verify",
         "migrate_batch_studies", "recall_pin_days", "fixity_offline_weeks"}


def _number(value: Any, key: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise PolicyError(f"policy.{key}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def _int(value: Any, key: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PolicyError(f"policy.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def parse_policy(raw: Any, *, online_capacity: int | None = None) -> Policy:
    """Validate a policy mapping (None gives the defaults)."""
    if raw is None:
        return Policy(online_capacity_bytes=online_capacity)
    if not isinstance(raw, dict):
        raise PolicyError(f"policy: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise PolicyError(f"policy: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    kw: dict[str, Any] = {}
    if "online_retention_years" in raw:
        kw["online_retention_years"] = _number(raw["online_retention_years"], "online_retention_years")
    if "age_basis" in raw:
        if raw["age_basis"] not in ("study_date", "received_at"):
            raise PolicyError(f"policy.age_basis: expected study_date or received_at, got {raw['age_basis']!r}")
        kw["age_basis"] = raw["age_basis"]
    overrides = raw.get("modality_overrides") or {}
    if not isinstance(overrides, dict):
        raise PolicyError("policy.modality_overrides: expected a mapping of modality to years, e.g. {MG: 10}")
    kw["modality_overrides"] = {
        str(m): _number(v, f"modality_overrides.{m}") for m, v in overrides.items()
    }
    hold = raw.get("hold") or {}
    if not isinstance(hold, dict) or set(hold) - {"patients", "studies"}:
        raise PolicyError("policy.hold: expected a mapping with 'patients' and/or 'studies' lists")
    for key in ("patients", "studies"):
        items = hold.get(key) or []
        if not isinstance(items, list) or not all(isinstance(x, str | int) for x in items):
            raise PolicyError(f"policy.hold.{key}: expected a list of identifiers")
        kw[f"hold_{key}"] = frozenset(str(x) for x in items)
    marks = raw.get("watermarks")
    capacity = online_capacity
    if marks is not None:
        if not isinstance(marks, dict) or set(marks) - {"high", "low", "capacity"}:
            raise PolicyError(
                "policy.watermarks: expected a mapping with 'high', 'low' (fractions) and optional 'capacity'")
        high = _number(marks.get("high"), "watermarks.high")
        low = _number(marks.get("low", high), "watermarks.low")
        if not 0 < low <= high <= 1:
            raise PolicyError("policy.watermarks: need 0 < low <= high <= 1 (fractions of the online capacity)")
        if "capacity" in marks:
            try:
                capacity = parse_size(marks["capacity"], "policy.watermarks.capacity")
            except ConfigError as exc:
                raise PolicyError(str(exc)) from exc
        if not capacity:
            raise PolicyError(
                "policy.watermarks: needs the online capacity (watermarks.capacity or capacity.online_bytes)")
        kw["high_watermark"], kw["low_watermark"] = high, low
    kw["online_capacity_bytes"] = capacity
    if "packing" in raw:
        if not isinstance(raw["packing"], bool):
            raise PolicyError(f"policy.packing: expected true or false, got {raw['packing']!r}")
        kw["packing"] = raw["packing"]
    if "offline_copy" in raw:
        if raw["offline_copy"] not in ("immediate", "on_eviction"):
            raise PolicyError(f"policy.offline_copy: expected immediate or on_eviction, got {raw['offline_copy']!r}")
        kw["offline_copy"] = raw["offline_copy"]
    if "verify" in raw:
        if raw["verify"] not in ("checksum", "readback"):
            raise PolicyError(f"policy.verify: expected checksum or readback, got {raw['verify']!r}")
        kw["verify"] = raw["verify"]
    for key in ("migrate_batch_studies", "recall_pin_days", "fixity_offline_weeks"):
        if key in raw:
            kw[key] = _int(raw[key], key)
    return Policy(**kw)


def load_policy(cfg: Config) -> Policy:
    """The policy of a configuration: inline mapping, or a YAML file relative to the config."""
    raw = cfg.policy_raw
    capacity = parse_size(cfg.capacity_raw.get("online_bytes"), "capacity.online_bytes")
    if isinstance(raw, str):
        path = Path(raw)
        if not path.is_absolute():
            path = cfg.base / path
        if not path.is_file():
            raise PolicyError(f"policy: file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise PolicyError(f"policy file {path}: not valid YAML: {exc}") from exc
    return parse_policy(raw, online_capacity=capacity)
