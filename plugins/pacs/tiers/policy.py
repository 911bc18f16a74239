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
approve_plan: false              # true: pacs_lifecycle waits for a person to approve each plan
delete_after_years: {}           # off: nothing expires. {US: 10, XA: 25}: instances of series of
                                 # that modality are deleted by `pacs purge --retention` once their
                                 # study is older (never held or pinned studies)
```
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pacs.errors import ConfigError, PolicyError
from pacs.sizes import parse_size


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
    approve_plan: bool = False
    delete_after_years: dict[str, float] = field(default_factory=dict)

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
            "approve_plan": self.approve_plan,
            "delete_after_years": dict(self.delete_after_years),
        }


_KEYS = {"online_retention_years", "age_basis", "modality_overrides", "hold", "watermarks", "offline_copy",
         "packing", "verify",
         "migrate_batch_studies", "recall_pin_days", "fixity_offline_weeks", "approve_plan", "delete_after_years"}


def _number(value: Any, key: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise PolicyError(f"policy.{key}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def _int(value: Any, key: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PolicyError(f"policy.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _choice(raw: dict[str, Any], key: str, allowed: tuple[str, ...], kw: dict[str, Any]) -> None:
    if key in raw:
        if raw[key] not in allowed:
            raise PolicyError(f"policy.{key}: expected {' or '.join(allowed)}, got {raw[key]!r}")
        kw[key] = raw[key]


def _overrides(raw: dict[str, Any]) -> dict[str, float]:
    overrides = raw.get("modality_overrides") or {}
    if not isinstance(overrides, dict):
        raise PolicyError("policy.modality_overrides: expected a mapping of modality to years, e.g. {MG: 10}")
    return {str(m): _number(v, f"modality_overrides.{m}") for m, v in overrides.items()}


def _delete_after(raw: dict[str, Any]) -> dict[str, float]:
    rules = raw.get("delete_after_years") or {}
    if not isinstance(rules, dict):
        raise PolicyError("policy.delete_after_years: expected a mapping of modality to years, e.g. {US: 10}")
    out = {str(m): _number(v, f"delete_after_years.{m}") for m, v in rules.items()}
    for m, years in out.items():
        if years < 1:
            raise PolicyError(f"policy.delete_after_years.{m}: expected at least 1 year, got {years:g} "
                              "(a retention rule deletes data; remove the key to keep everything)")
    return out


def _hold(raw: dict[str, Any]) -> dict[str, frozenset[str]]:
    hold = raw.get("hold") or {}
    if not isinstance(hold, dict) or set(hold) - {"patients", "studies"}:
        raise PolicyError("policy.hold: expected a mapping with 'patients' and/or 'studies' lists")
    out = {}
    for key in ("patients", "studies"):
        items = hold.get(key) or []
        if not isinstance(items, list) or not all(isinstance(x, str | int) for x in items):
            raise PolicyError(f"policy.hold.{key}: expected a list of identifiers")
        out[f"hold_{key}"] = frozenset(str(x) for x in items)
    return out


def _watermarks(marks: Any, online_capacity: int | None) -> dict[str, Any]:
    """High and low watermarks with the online capacity they are fractions of."""
    if marks is None:
        return {"online_capacity_bytes": online_capacity}
    if not isinstance(marks, dict) or set(marks) - {"high", "low", "capacity"}:
        raise PolicyError("policy.watermarks: expected a mapping with 'high', 'low' (fractions) "
                          "and optional 'capacity'")
    high = _number(marks.get("high"), "watermarks.high")
    low = _number(marks.get("low", high), "watermarks.low")
    if not 0 < low <= high <= 1:
        raise PolicyError("policy.watermarks: need 0 < low <= high <= 1 (fractions of the online capacity)")
    capacity = online_capacity
    if "capacity" in marks:
        try:
            capacity = parse_size(marks["capacity"], "policy.watermarks.capacity")
        except ConfigError as exc:
            raise PolicyError(str(exc)) from exc
    if not capacity:
        raise PolicyError("policy.watermarks: needs the online capacity (watermarks.capacity or capacity.online_bytes)")
    return {"high_watermark": high, "low_watermark": low, "online_capacity_bytes": capacity}


def parse_policy(raw: Any, *, online_capacity: int | None = None) -> Policy:
    """Validate a policy mapping (None gives the defaults)."""
    if raw is None:
        return Policy(online_capacity_bytes=online_capacity)
    if not isinstance(raw, dict):
        raise PolicyError(f"policy: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise PolicyError(f"policy: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    kw: dict[str, Any] = {"modality_overrides": _overrides(raw), "delete_after_years": _delete_after(raw),
                          **_hold(raw),
                          **_watermarks(raw.get("watermarks"), online_capacity)}
    if "online_retention_years" in raw:
        kw["online_retention_years"] = _number(raw["online_retention_years"], "online_retention_years")
    _choice(raw, "age_basis", ("study_date", "received_at"), kw)
    _choice(raw, "offline_copy", ("immediate", "on_eviction"), kw)
    _choice(raw, "verify", ("checksum", "readback"), kw)
    for key in ("packing", "approve_plan"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise PolicyError(f"policy.{key}: expected true or false, got {raw[key]!r}")
            kw[key] = raw[key]
    for key in ("migrate_batch_studies", "recall_pin_days", "fixity_offline_weeks"):
        if key in raw:
            kw[key] = _int(raw[key], key)
    return Policy(**kw)


def read_policy(raw: Any, base: Path, *, online_capacity: int | None = None) -> Policy:
    """The policy of a configuration: an inline mapping, or a YAML file (relative to ``base``)."""
    if isinstance(raw, str):
        path = Path(raw)
        if not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise PolicyError(f"policy: file {path} does not exist; create it, or make 'policy' a mapping "
                              "(config/lifecycle.yaml is the example)")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise PolicyError(f"policy file {path}: not valid YAML{where}: "
                              f"{getattr(exc, 'problem', None) or 'cannot be parsed'}") from exc
    return parse_policy(raw, online_capacity=online_capacity)
