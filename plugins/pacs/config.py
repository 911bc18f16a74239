"""The archive's configuration: one YAML file named by ``PACS_CONFIG``.

Owns loading and validating the file, resolving relative paths against the file's folder,
``${ENV}`` interpolation, and :class:`Location` — a place in a tier (a local folder or an
``s3://`` prefix) with the fsspec filesystem that reaches it. Credentials come from an Airflow
connection (``conn_id``) or the environment, never from the file itself.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fsspec.utils import infer_storage_options

from pacs.errors import ConfigError
from pacs.store.location import Location

DEFAULT_CONFIG = "config/pacs.yaml"
SECRET_OPTION_KEYS = {"key", "secret", "token", "password", "aws_secret_access_key", "aws_access_key_id"}
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, where: str) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in strings with environment values."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set")

        return _ENV_RE.sub(repl, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _location(name: str, raw: Any, base: Path) -> Location:
    if isinstance(raw, str):
        url, options, conn_id = raw, {}, None
    elif isinstance(raw, dict):
        unknown = set(raw) - {"url", "storage_options", "conn_id"}
        if unknown:
            raise ConfigError(f"{name}: unknown key(s) {sorted(unknown)}; expected url, storage_options, conn_id")
        if "url" not in raw:
            raise ConfigError(f"{name}: a location mapping needs a 'url'")
        url, options, conn_id = raw["url"], dict(raw.get("storage_options") or {}), raw.get("conn_id")
    else:
        raise ConfigError(f"{name}: a location is a URL string or a mapping with 'url', got {type(raw).__name__}")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{name}: 'url' must be a non-empty string")
    for k in options:
        if k.lower() in SECRET_OPTION_KEYS:
            raise ConfigError(
                f"{name}.storage_options.{k}: credentials do not belong in the configuration file; "
                "use conn_id (an Airflow connection) or the environment (AWS_ACCESS_KEY_ID, ...)"
            )
    proto = infer_storage_options(url).get("protocol", "file")
    if proto in ("file", "local"):
        path = infer_storage_options(url)["path"]
        if not os.path.isabs(path):
            path = str((base / path).resolve())
        url = path
    return Location(name=name, url=url, storage_options=options, conn_id=conn_id)


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


@dataclass(frozen=True)
class IngestSettings:
    """Tuning of ``pacs_ingest``."""

    schedule: str | None = "*/15 * * * *"
    batch_size: int = 2000
    max_files_per_run: int = 200_000
    workers: int = max(1, min(os.cpu_count() or 1, 8))  # processes per batch
    ignore: tuple[str, ...] = (".*", "*.part", "*.tmp", "*~")
    fsync: bool = True
    rename: bool = True  # rename instead of copy when landing and a tier share a filesystem
    merge_chunk_rows: int = 250_000

    def ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pat) for pat in self.ignore)


@dataclass(frozen=True)
class Config:
    """The loaded configuration; see README "Configuration reference"."""

    path: Path
    landing: tuple[Location, ...]
    online: Location
    offline: Location
    quarantine: Location
    work: Location
    reports: Location
    duckdb: Path
    parquet: Location
    settle_seconds: int
    ingest: IngestSettings
    policy_raw: Any
    capacity_raw: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def base(self) -> Path:
        return self.path.parent

    def all_roots(self) -> list[Location]:
        return [*self.landing, self.online, self.offline, self.quarantine, self.work, self.reports, self.parquet]


_TOP_KEYS = {"landing", "online", "offline", "quarantine", "catalogue", "settle_seconds", "policy",
             "work", "reports", "ingest", "capacity", "lifecycle", "fixity", "recall"}


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the configuration named by ``path`` or ``$PACS_CONFIG``."""
    cfg_path = Path(path or os.environ.get("PACS_CONFIG") or DEFAULT_CONFIG).resolve()
    if not cfg_path.is_file():
        raise ConfigError(f"configuration file {cfg_path} does not exist (set PACS_CONFIG)")
    try:
        raw = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{cfg_path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path}: the top level must be a mapping")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{cfg_path}: unknown top-level key(s) {sorted(unknown)}")
    raw = _interpolate(raw, cfg_path.name)
    base = cfg_path.parent
    for key in ("landing", "online", "offline", "quarantine", "catalogue"):
        if key not in raw:
            raise ConfigError(f"{cfg_path}: missing required key '{key}'")
    landing_raw = raw["landing"]
    if isinstance(landing_raw, str | dict):
        landing_raw = [landing_raw]
    if not isinstance(landing_raw, list) or not landing_raw:
        raise ConfigError("landing: expected a non-empty list of locations")
    landing = tuple(_location(f"landing[{i}]", item, base) for i, item in enumerate(landing_raw))
    cat = raw["catalogue"]
    if not isinstance(cat, dict) or "duckdb" not in cat or "parquet" not in cat:
        raise ConfigError("catalogue: expected a mapping with 'duckdb' (a file path) and 'parquet' (a location)")
    duckdb_path = Path(str(cat["duckdb"]))
    if not duckdb_path.is_absolute():
        duckdb_path = (base / duckdb_path).resolve()
    online = _location("online", raw["online"], base)
    work_default = str(duckdb_path.parent / "work")
    reports_default = str(duckdb_path.parent / "reports")
    settle = raw.get("settle_seconds", 60)
    if not isinstance(settle, int) or isinstance(settle, bool) or settle < 0:
        raise ConfigError(f"settle_seconds: expected a non-negative integer, got {settle!r}")
    ingest_raw = raw.get("ingest") or {}
    if not isinstance(ingest_raw, dict):
        raise ConfigError("ingest: expected a mapping")
    allowed = set(IngestSettings.__dataclass_fields__)
    bad = set(ingest_raw) - allowed
    if bad:
        raise ConfigError(f"ingest: unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
    ingest_kwargs = dict(ingest_raw)
    if "ignore" in ingest_kwargs:
        ingest_kwargs["ignore"] = tuple(ingest_kwargs["ignore"] or ())
    for k in ("batch_size", "max_files_per_run", "workers", "merge_chunk_rows"):
        if k in ingest_kwargs and (not isinstance(ingest_kwargs[k], int) or ingest_kwargs[k] < 1):
            raise ConfigError(f"ingest.{k}: expected a positive integer, got {ingest_kwargs[k]!r}")
    capacity = raw.get("capacity") or {}
    if not isinstance(capacity, dict):
        raise ConfigError("capacity: expected a mapping")
    return Config(
        path=cfg_path,
        landing=landing,
        online=online,
        offline=_location("offline", raw["offline"], base),
        quarantine=_location("quarantine", raw["quarantine"], base),
        work=_location("work", raw.get("work", work_default), base),
        reports=_location("reports", raw.get("reports", reports_default), base),
        duckdb=duckdb_path,
        parquet=_location("catalogue.parquet", cat["parquet"], base),
        settle_seconds=settle,
        ingest=IngestSettings(**ingest_kwargs),
        policy_raw=raw.get("policy"),
        capacity_raw=capacity,
        raw=raw,
    )
