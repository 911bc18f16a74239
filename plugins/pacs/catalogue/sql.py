"""SQL kept in ``include/sql/*.sql``, loaded by file name.

Python never builds SQL from values: statements take ``$name`` parameters or read registered
Arrow tables. A file may hold several statements separated by ``;`` at the end of a line.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

_DEFAULT_DIR = Path(__file__).resolve().parents[3] / "include" / "sql"
_NAME = re.compile(r"[a-z0-9_]+")


def sql_dir() -> Path:
    return Path(os.environ.get("PACS_SQL_DIR", _DEFAULT_DIR))


@cache
def _load(directory: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad SQL file name {name!r}")
    path = Path(directory) / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} not found (PACS_SQL_DIR={directory})")
    return path.read_text()


def load(name: str) -> str:
    """The text of ``include/sql/<name>.sql``."""
    return _load(str(sql_dir()), name)


def statements(name: str) -> list[str]:
    """The statements of ``include/sql/<name>.sql``, whole-line comments removed."""
    parts = re.split(r";[ \t]*(?:--[^\n]*)?\n", load(name) + "\n")
    out = []
    for part in parts:
        body = "\n".join(line for line in part.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            out.append(body)
    return out


def params_for(statement: str, params: dict[str, object]) -> dict[str, object]:
    """The subset of ``params`` that a statement uses (DuckDB rejects unused named parameters)."""
    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", statement))
    missing = used - set(params)
    if missing:
        raise KeyError(f"SQL parameter(s) {sorted(missing)} not provided")
    return {k: v for k, v in params.items() if k in used}


def named_queries(name: str) -> dict[str, str]:
    """Queries of a file whose statements each follow a ``-- name: <query name>`` line."""
    out: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in load(name).splitlines():
        m = re.match(r"\s*--\s*name:\s*([A-Za-z0-9_]+)\s*$", line)
        if m:
            if current:
                out[current] = "\n".join(lines).strip().rstrip(";")
            current, lines = m.group(1), []
        elif current is not None and not line.strip().startswith("--"):
            lines.append(line)
    if current:
        out[current] = "\n".join(lines).strip().rstrip(";")
    return out
