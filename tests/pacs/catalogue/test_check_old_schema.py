"""``pacs check`` on a catalogue no writer has opened since the package's schema grew.

``pacs check`` opens the catalogue read-only, so it cannot add what a newer package defines
(``correction``, ``patient.merged_into``, ...). The checks of what is missing have nothing to
violate yet and are passed over; every other check still runs and still finds damage. On a
catalogue of the current schema a failing check query is a bug, and raises.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from pacs import catalogue
from pacs.catalogue.checks import check


def _older(cfg: Any) -> None:
    con = catalogue.connect(cfg.duckdb)
    con.execute("DROP TABLE correction")
    con.execute("ALTER TABLE patient DROP COLUMN merged_into")
    con.close()


def test_check_passes_over_what_an_older_catalogue_lacks(archive) -> None:
    cfg = archive()
    _older(cfg)
    assert check(cfg) == []


def _with_check(monkeypatch: pytest.MonkeyPatch, name: str, query: str) -> None:
    from pacs.catalogue import sql

    real = sql.named_queries

    def more(file: str) -> dict[str, str]:
        out = dict(real(file))
        if file == "checks":
            out[name] = query
        return out

    monkeypatch.setattr(sql, "named_queries", more)


def test_check_still_reports_violations_in_an_older_catalogue(archive, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = archive()
    _older(cfg)
    # one check that finds a violation, among the ones passed over: it is still reported
    _with_check(monkeypatch, "patients_without_a_name_row", "SELECT count(*) + 1 FROM patient")
    assert check(cfg) == ["patients_without_a_name_row: 1"]


def test_a_broken_check_on_a_current_catalogue_raises(archive, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = archive()
    catalogue.connect(cfg.duckdb).close()
    _with_check(monkeypatch, "broken", "SELECT count(*) FROM no_such_table")
    with pytest.raises(duckdb.CatalogException):
        check(cfg)
