"""What the catalogue holds and whether it is consistent: ``pacs summary`` and ``pacs check``.

:func:`summary` counts patients, studies, series, images, bytes, duplicates and quarantined
files by reason (no patient data); :func:`check` runs the invariant queries of
``include/sql/checks.sql`` (unique SOP instances, exact aggregates, ...) and returns what fails.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb

from pacs.catalogue import sql
from pacs.catalogue.db import ensure_schema, opened


def summary(cfg: Any) -> dict[str, Any]:
    """Counts of what the catalogue holds (no patient data)."""
    if not cfg.duckdb.exists():
        return {"catalogue": str(cfg.duckdb), "empty": True}
    with opened(cfg.duckdb, read_only=True) as con:
        one = con.execute("""
            SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study), (SELECT count(*) FROM series),
                   (SELECT count(*) FROM image), (SELECT coalesce(sum(size_bytes), 0) FROM image),
                   (SELECT coalesce(sum(duplicates), 0) FROM ingest_batch),
                   (SELECT coalesce(sum(files), 0) FROM ingest_batch)
        """).fetchall()[0]
        reasons = dict(con.sql(
            "SELECT reason, count(*) FROM quarantine WHERE status = 'quarantined' GROUP BY reason ORDER BY reason"
        ).fetchall())
        departmental = _departmental(con)
        tiers = dict(con.sql("SELECT tier, count(*) FROM image GROUP BY tier ORDER BY tier").fetchall())
        modalities = dict(con.sql(
            "SELECT modality, count(*) FROM image JOIN series USING (series_instance_uid) GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall())
    keys = ("patients", "studies", "series", "images", "bytes", "duplicates", "files_received")
    out: dict[str, Any] = dict(zip(keys, (int(v) for v in one), strict=True))
    out.update(quarantined=reasons, images_by_tier=tiers, images_by_modality=modalities, departmental=departmental,
               catalogue=str(cfg.duckdb), parquet=cfg.parquet.url, online=cfg.online.url,
               quarantine_location=cfg.quarantine.url)
    return out


def _departmental(con: Any) -> dict[str, dict[str, int]]:
    """Rows per departmental table and those with a malformed value (empty for a catalogue no
    writer has opened since the tables were added)."""
    try:
        rows = con.execute(sql.load("departmental_summary")).fetchall()
    except duckdb.CatalogException:
        return {}
    return {t: {"rows": int(n), "malformed": int(m)} for t, n, m in rows}


def _print_landing(landing: dict[str, Any]) -> None:
    """What waits in landing (``info["landing"]``, from :func:`pacs.intake.landing.landing_state`)."""
    if not landing.get("swept_at"):
        print("Landing: not swept yet")
    elif landing["waiting"]:
        future = f", {landing['future_dated']:,} with a modification time in the future" \
            if landing["future_dated"] else ""
        print(f"Landing: {landing['waiting']:,} file(s) were waiting to settle at the last sweep "
              f"({_utc(landing['swept_at'])}{future}); a sweep takes a file once it is unchanged for "
              f"{landing['settle_seconds']} s")
    else:
        print(f"Landing: no file was waiting to settle at the last sweep ({_utc(landing['swept_at'])})")
    for where in landing.get("missing", []):
        print(f"  missing: {where} does not exist")


def _utc(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def print_summary(info: dict[str, Any]) -> None:
    if info.get("empty"):
        print(f"The catalogue {info['catalogue']} is empty.")
        if "landing" in info:
            _print_landing(info["landing"])
        return
    gb = info["bytes"] / 1e9
    print("Catalogue")
    print(f"  patients {info['patients']:,}   studies {info['studies']:,}   series {info['series']:,}   "
          f"images {info['images']:,}   {gb:,.2f} GB")
    print(f"  by modality: {', '.join(f'{k} {v:,}' for k, v in info['images_by_modality'].items())}")
    print(f"  by tier: {', '.join(f'{k} {v:,}' for k, v in info['images_by_tier'].items())}")
    print(f"  identical duplicates removed from landing: {info['duplicates']:,} "
          f"(files received: {info['files_received']:,})")
    filled = {t: v for t, v in info.get("departmental", {}).items() if v["rows"]}
    if filled:
        malformed = sum(v["malformed"] for v in filled.values())
        tables = ", ".join(f"{t} {v['rows']:,}" for t, v in filled.items())
        note = f" ({malformed:,} with a malformed value left empty)" if malformed else ""
        print(f"  departmental: {tables}{note}")
    total_q = sum(info["quarantined"].values())
    print(f"Quarantined files: {total_q:,}" + (": " + ", ".join(f"{k} {v}" for k, v in info["quarantined"].items())
                                               if total_q else ""))
    print(f"  in {info['quarantine_location']}")
    if "landing" in info:
        _print_landing(info["landing"])
    print(f"DuckDB catalogue: {info['catalogue']}")
    print(f"Parquet snapshot: {info['parquet']}")
    print("Try:")
    print('  .venv/bin/pacs query "SELECT modality, count(*) AS images, round(sum(size_bytes) / 1e9, 2) AS gb '
          'FROM image JOIN series USING (series_instance_uid) GROUP BY ALL ORDER BY images DESC"')
    if filled.get("dose_report"):
        print('  .venv/bin/pacs query "SELECT * FROM ct_dose_by_protocol ORDER BY month DESC, studies DESC LIMIT 10"')
    print(f"  or in any DuckDB: .read {info['parquet']}/_snapshot.sql  then  "
          "SELECT study_year, count(*) AS studies FROM study GROUP BY ALL ORDER BY 1;")


def _schema_is_current(con: Any) -> bool:
    """Whether the catalogue has every table and column the package's schema files define."""
    have = {(t, c) for t, c in con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall()}
    probe = duckdb.connect()  # the current schema, in memory
    try:
        ensure_schema(probe)
        want = {(t, c) for t, c in probe.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall()}
    finally:
        probe.close()
    return want <= have


def check(cfg: Any) -> list[str]:
    """Invariant checks of the catalogue; returns the problems found (empty when consistent)."""
    problems: list[str] = []
    with opened(cfg.duckdb, read_only=True) as con:
        for name, query in sql.named_queries("checks").items():
            try:
                n = con.execute(query).fetchall()[0][0]
            except (duckdb.CatalogException, duckdb.BinderException):
                # a catalogue no writer has opened since the package added a table or column
                # (e.g. `correction`): nothing of what is missing can be violated yet. A check
                # failing on a catalogue of the current schema is a bug, and raises.
                if _schema_is_current(con):
                    raise
                continue
            if n:
                problems.append(f"{name}: {n}")
        missing = _sop_index_missing(con, cfg.duckdb)
        if missing:
            problems.append(f"image_sop_rows_missing_from_sop_index: {missing}")
    return problems


def _sop_index_missing(con: Any, path: Any) -> int:
    """Rows of image_sop that the SOP-instance index beside the catalogue does not hold, when the
    index claims to match the catalogue (same token) and can be read; any other is rebuilt by the
    next merge before it is used, so it cannot let a duplicate in."""
    from pacs.catalogue import sop_index

    try:
        token = sop_index.catalogue_token(con)
        meta = json.loads((sop_index.index_dir(path) / sop_index.META).read_text())
    except (duckdb.CatalogException, OSError, ValueError):
        return 0
    if not token or meta.get("token") != token:
        return 0
    try:
        index = sop_index.SopIndex(sop_index.index_dir(path), meta)
    except (OSError, ValueError, KeyError):
        return 0  # unreadable: the next merge rebuilds it
    missing = 0
    for batch in con.sql("SELECT sop_hash FROM image_sop").to_arrow_reader(1_000_000):
        missing += index.missing(batch.column(0).to_numpy())
    return missing
