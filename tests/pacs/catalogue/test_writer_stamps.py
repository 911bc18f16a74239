"""Every catalogue writer stamps the rows it changes, so the snapshot refresh finds them.

The refresh (:mod:`pacs.catalogue.snapshot_refresh`) takes the rows whose ``updated_at`` is later
than the previous refresh's start; a write that does not set it to ``now()`` (its transaction's
start) would never reach the analysts, and a deleted row would stay in the snapshot unless its
writer records it in ``snapshot_removed`` in the same SQL file (the purge does).
"""

from __future__ import annotations

import ast
import re

from helpers import ROOT

from pacs.catalogue import sql

WRITES = re.compile(r"\b(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+(image|study|series|patient)\b", re.IGNORECASE)


def _statements() -> list[tuple[str, str]]:
    """Every SQL statement of the package: include/sql files and SQL strings in the Python code."""
    out: list[tuple[str, str]] = []
    for path in sorted((ROOT / "include" / "sql").glob("*.sql")):
        if path.stem.startswith("schema") or path.stem == "report_bench_catalogue":  # DDL; a bench's own data
            continue
        out += [(path.name, stmt) for stmt in sql.statements(path.stem)]
    for path in sorted((ROOT / "plugins" / "pacs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and WRITES.search(node.value):
                out.append((str(path.relative_to(ROOT)), node.value))
    return out


def test_every_writer_stamps_the_rows_it_changes_for_the_refresh() -> None:
    """A refresh finds changed rows by ``updated_at``: every write must set it to ``now()``."""
    checked = 0
    statements = _statements()
    removed = {(where, t) for where, stmt in statements
               for t in re.findall(r"INSERT INTO snapshot_removed\s+SELECT\s+'(\w+)'", stmt)}
    for where, stmt in statements:
        for m in WRITES.finditer(stmt):
            verb = m.group(1).split()[0].upper()
            if verb == "DELETE":
                assert (where, m.group(2).lower()) in removed, (
                    f"{where}: a deleted row would stay in the snapshot (record it in snapshot_removed): {stmt[:80]}")
                checked += 1
                continue
            body = stmt[m.start():]
            assert re.search(r"updated_at\s*=\s*now\(\)" if verb == "UPDATE" else r"now\(\)", body), (
                f"{where}: {verb} {m.group(2)} does not set updated_at = now(): {stmt[:120]}")
            checked += 1
    assert checked >= 10
