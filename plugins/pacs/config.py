"""The archive's configuration: one YAML file named by ``PACS_CONFIG``.

Owns loading and validating the file, resolving relative paths against the file's folder,
``${ENV}`` interpolation, and :class:`Location` — a place in a tier (a local folder or an
``s3://`` prefix) with the fsspec filesystem that reaches it. Credentials come from an Airflow
connection (``conn_id``) or the environment, never from the file itself.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pacs.errors import ConfigError
from pacs.reports.settings import CapacitySettings, parse_settings
from pacs.sizes import parse_size as parse_size  # re-exported: config.parse_size
from pacs.store.location import Location
from pacs.tiers.policy import Policy, read_policy

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
    return Location.at(name, url, base=base, storage_options=options, conn_id=conn_id)


@dataclass(frozen=True)
class IngestSettings:
    """Tuning of ``pacs_ingest`` (its schedule is the DAG's: ``PACS_INGEST_SCHEDULE``)."""

    batch_size: int = 2000
    max_files_per_run: int = 200_000
    workers: int = max(1, min(os.cpu_count() or 1, 8))  # processes per batch
    ignore: tuple[str, ...] = (".*", "*.part", "*.tmp", "*~")
    fsync: bool = True
    rename: bool = True  # rename instead of copy when landing and a tier share a filesystem
    merge_chunk_rows: int = 10_000  # rows per merge transaction: bounds the merge's memory (a 100,000-file
    # backlog in 250,000-row chunks peaked at 845 MB RSS, in 10,000-row ones at ~610 MB; bench/backlog_rss.py)

    def ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pat) for pat in self.ignore)


@dataclass(frozen=True)
class BackupSettings:
    """The catalogue's backups (``pacs backup``, the ``pacs_backup`` DAG): generations kept in the
    offline tier under ``_catalogue/backups/`` (its schedule is the DAG's: ``PACS_BACKUP_SCHEDULE``)."""

    keep: int = 7  # verified generations kept; older ones are deleted after a new one is verified


@dataclass(frozen=True)
class Config:
    """The loaded configuration, every section validated; see README "Configuration reference"."""

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
    policy: Policy
    capacity: CapacitySettings
    backup: BackupSettings = field(default_factory=lambda: BackupSettings())

    @property
    def base(self) -> Path:
        return self.path.parent

    def all_roots(self) -> list[Location]:
        return [*self.landing, self.online, self.offline, self.quarantine, self.work, self.reports, self.parquet]


_TOP_KEYS = {"landing", "online", "offline", "quarantine", "catalogue", "settle_seconds", "policy",
             "work", "reports", "ingest", "capacity", "backup"}
# Keys earlier versions read and this one does not: named, so that nobody believes they still act.
_DEAD_KEYS = {
    "lifecycle": "the lifecycle policy is the 'policy' key (inline, or a file path)",
    "fixity": "fixity is tuned by policy.fixity_offline_weeks and scheduled by PACS_FIXITY_SCHEDULE",
    "recall": "recalls are pinned for policy.recall_pin_days",
}
_DEAD_INGEST_KEYS = {"schedule": "the ingest schedule is the DAG's: set PACS_INGEST_SCHEDULE"}


_REQUIRED_KEYS = ("landing", "online", "offline", "quarantine", "catalogue")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: what and where (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {getattr(exc, 'problem', None) or 'cannot be parsed'}"


def _unknown_keys(unknown: list[str], allowed: set[str]) -> str:
    """``['onlin'] (did you mean 'online'?)``: the unknown keys, with the allowed key each is closest to."""
    guesses = [f"'{m[0]}' for '{k}'" for k in unknown if (m := difflib.get_close_matches(k, allowed, n=1))]
    return f"{unknown}" + (f" (did you mean {', '.join(guesses)}?)" if guesses else "")


def _read_mapping(cfg_path: Path, named_by: str) -> dict[str, Any]:
    if not cfg_path.is_file():
        what = "is a folder, not a file" if cfg_path.is_dir() else "does not exist"
        raise ConfigError(f"configuration file {cfg_path} {what}{f' ({named_by})' if named_by else ''}; pass "
                          "--config FILE or set PACS_CONFIG to the archive's configuration (the project's "
                          "config/pacs.yaml is the embedded default)")
    try:
        raw = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{cfg_path}: {_yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path}: the top level must be a mapping of keys "
                          f"(required: {', '.join(_REQUIRED_KEYS)})")
    for key in sorted(set(raw) & set(_DEAD_KEYS)):
        raise ConfigError(f"{cfg_path}: '{key}' is no longer read ({_DEAD_KEYS[key]}); remove it")
    problems = []
    unknown = sorted(str(k) for k in set(raw) - _TOP_KEYS)
    if unknown:
        problems.append(f"unknown top-level key(s) {_unknown_keys(unknown, _TOP_KEYS)}")
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        problems.append(f"missing required key(s) {missing}")
    if problems:
        raise ConfigError(f"{cfg_path}: {'; '.join(problems)}; allowed: {sorted(_TOP_KEYS)}, of which "
                          f"{list(_REQUIRED_KEYS)} are required (see the README's Configuration reference)")
    return _interpolate(raw, cfg_path.name)


def _landing(raw: Any, base: Path) -> tuple[Location, ...]:
    items = [raw] if isinstance(raw, str | dict) else raw
    if not isinstance(items, list) or not items:
        raise ConfigError("landing: expected a non-empty list of locations")
    return tuple(_location(f"landing[{i}]", item, base) for i, item in enumerate(items))


def _duckdb_path(cat: Any, base: Path) -> Path:
    if not isinstance(cat, dict) or "duckdb" not in cat or "parquet" not in cat:
        raise ConfigError("catalogue: expected a mapping with 'duckdb' (a file path) and 'parquet' (a location)")
    unknown = set(cat) - {"duckdb", "parquet"}
    if unknown:
        raise ConfigError(f"catalogue: unknown key(s) {_unknown_keys(sorted(unknown), {'duckdb', 'parquet'})}; "
                          "allowed: ['duckdb', 'parquet']")
    path = Path(str(cat["duckdb"]))
    return path if path.is_absolute() else (base / path).resolve()


def _settle(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"settle_seconds: expected a non-negative integer, got {value!r}")
    return value


def _ingest(raw: Any) -> IngestSettings:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("ingest: expected a mapping")
    for key in sorted(set(raw) & set(_DEAD_INGEST_KEYS)):
        raise ConfigError(f"ingest.{key} is no longer read ({_DEAD_INGEST_KEYS[key]}); remove it")
    allowed = set(IngestSettings.__dataclass_fields__)
    bad = set(raw) - allowed
    if bad:
        raise ConfigError(f"ingest: unknown key(s) {_unknown_keys(sorted(bad), allowed)}; allowed: {sorted(allowed)}")
    kwargs = dict(raw)
    if "ignore" in kwargs:
        kwargs["ignore"] = tuple(kwargs["ignore"] or ())
    for k in ("batch_size", "max_files_per_run", "workers", "merge_chunk_rows"):
        if k in kwargs and (isinstance(kwargs[k], bool) or not isinstance(kwargs[k], int) or kwargs[k] < 1):
            raise ConfigError(f"ingest.{k}: expected a positive integer, got {kwargs[k]!r}")
    for k in ("fsync", "rename"):
        if k in kwargs and not isinstance(kwargs[k], bool):
            raise ConfigError(f"ingest.{k}: expected true or false, got {kwargs[k]!r}")
    return IngestSettings(**kwargs)


def _backup(raw: Any) -> BackupSettings:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError("backup: expected a mapping, e.g. {keep: 7}")
    bad = set(raw) - {"keep"}
    if bad:
        raise ConfigError(f"backup: unknown key(s) {_unknown_keys(sorted(bad), {'keep'})}; allowed: ['keep']")
    keep = raw.get("keep", BackupSettings.keep)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"backup.keep: expected a positive integer (generations kept), got {keep!r}")
    return BackupSettings(keep=keep)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration named by ``path`` or ``$PACS_CONFIG`` and validate every section
    (locations, catalogue, ingest, the lifecycle policy and the capacity settings) now, so that
    a mistake anywhere fails the first command or task with the file and the key named.

    Raises
    ------
    ConfigError
        One line naming the file, the key and what is allowed (a :class:`PolicyError` for the
        lifecycle policy).
    """
    named_by = "" if path else ("named by PACS_CONFIG" if os.environ.get("PACS_CONFIG")
                                     else f"the default, {DEFAULT_CONFIG} in the working directory")
    cfg_path = Path(path or os.environ.get("PACS_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        return _load(cfg_path, named_by)
    except ConfigError as exc:
        if str(cfg_path) in str(exc):
            raise
        raise type(exc)(f"{cfg_path}: {exc}") from exc  # every message names the file


def _load(cfg_path: Path, named_by: str) -> Config:
    raw = _read_mapping(cfg_path, named_by)
    base = cfg_path.parent
    duckdb_path = _duckdb_path(raw["catalogue"], base)
    capacity = parse_settings(raw.get("capacity"))
    return Config(
        path=cfg_path,
        landing=_landing(raw["landing"], base),
        online=_location("online", raw["online"], base),
        offline=_location("offline", raw["offline"], base),
        quarantine=_location("quarantine", raw["quarantine"], base),
        work=_location("work", raw.get("work", str(duckdb_path.parent / "work")), base),
        reports=_location("reports", raw.get("reports", str(duckdb_path.parent / "reports")), base),
        duckdb=duckdb_path,
        parquet=_location("catalogue.parquet", raw["catalogue"]["parquet"], base),
        settle_seconds=_settle(raw.get("settle_seconds", 60)),
        ingest=_ingest(raw.get("ingest")),
        policy=read_policy(raw.get("policy"), base, online_capacity=capacity.online_bytes),
        capacity=capacity,
        backup=_backup(raw.get("backup")),
    )
