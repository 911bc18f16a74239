"""Recall: bring studies back to the online tier, verified, and pin them until a date (``pacs_recall``).

Every offline copy is read back (a packed series member with one ranged read) and checked
against the catalogue's sha256 before it is published online; the copies are recorded and the
studies pinned, so lifecycle does not evict them before the pin expires. The offline copy is
never deleted. A recall that cannot be done as asked (no such study, no room online) fails
before anything is copied, with a :class:`~pacs.errors.RecallError` (terminal: no retries).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from pacs import catalogue, journal, store
from pacs.catalogue import sql
from pacs.config import Config
from pacs.dicom.layout import image_key
from pacs.errors import RecallError
from pacs.store import transfer

log = logging.getLogger(__name__)


def _asked(study_uids: Sequence[str], patient_id: str | None, accession_number: str | None) -> str:
    """What a recall asked for, without patient data: study UIDs are named, the others are not."""
    if study_uids:
        shown = ", ".join(list(study_uids)[:5]) + (f" and {len(study_uids) - 5} more" if len(study_uids) > 5 else "")
        return f"study {shown}"
    return "the patient ID given" if patient_id else "the accession number given"



def recall(cfg: Config, *, study_uids: Sequence[str] = (), patient_id: str | None = None,
           accession_number: str | None = None, pin_until: dt.date | None = None,
           logical_date: dt.date, run_id: str = "manual", now: dt.datetime | None = None) -> dict[str, Any]:
    """Copy studies back online (verified), record the copies and pin the studies (catalogue writer).

    Fails with a clear :class:`RecallError` before copying anything when the online tier lacks
    room; if a copy fails midway, the copies already verified are recorded and nothing is lost.
    """
    now = now or dt.datetime.now(dt.UTC)
    policy = cfg.policy
    pin = pin_until or (logical_date + dt.timedelta(days=policy.recall_pin_days))
    if not (study_uids or patient_id or accession_number):
        raise RecallError("a recall needs study UIDs, a patient ID or an accession number")
    recall_id = journal.run_key(logical_date, run_id)
    with catalogue.opened(cfg.duckdb) as con:
        studies = con.sql(sql.load("recall_select"), params={
            "study_uids": list(study_uids), "patient_id": patient_id, "accession_number": accession_number,
        }).to_arrow_table()
        if studies.num_rows == 0:
            asked = _asked(study_uids, patient_id, accession_number)
            raise RecallError(f"no catalogued study matches the recall of {asked} in the catalogue {cfg.duckdb}; "
                              "check the identifiers (`pacs query` finds a study by its UID)")
        con.register("recall_studies", studies)
        images = con.sql(sql.load("recall_images")).to_arrow_table().to_pylist()
        todo = [r for r in images if not (r["online_uri"] and store.exists(
            cfg.online, r["online_uri"]))]
        missing = [r for r in todo if not r["offline_uri"]]
        if missing:
            raise RecallError(f"{len(missing)} image(s) have neither an online nor an offline copy")
        need = sum(r["size_bytes"] for r in todo)
        free = store.free_bytes(cfg.online)
        if free is not None and need > free:
            raise RecallError(f"the online tier has {free / 1e9:.2f} GB free; this recall needs {need / 1e9:.2f} GB. "
                              "Nothing was copied.")
        recalled: list[dict[str, str]] = []
        error: Exception | None = None
        with cf.ThreadPoolExecutor(max_workers=8) as pool:
            futures = {pool.submit(_recall_one, cfg, r): r for r in todo}
            for fut in cf.as_completed(futures):
                try:
                    uri = fut.result()
                except Exception as exc:  # noqa: BLE001 - record what was verified, then fail visibly
                    error = error or exc
                else:
                    recalled.append({"sop_instance_uid": futures[fut]["sop_instance_uid"], "online_uri": uri})
        con.register("recalled", pa.Table.from_pylist(
            recalled, schema=pa.schema([("sop_instance_uid", pa.string()), ("online_uri", pa.string())])))
        params = {"now": now, "pinned_until": pin, "recall_id": recall_id, "run_id": run_id,
                  "state": "failed" if error else "online"}
        with catalogue.transaction(con):
            catalogue.run_all(con, ("recall_commit", "aggregates", "lifecycle_study_state"), params)
        catalogue.refresh_snapshot(con, cfg.parquet)  # analysts see the recalled copies at once
    if error is not None:
        if isinstance(error, OSError) and error.errno == 28:
            raise RecallError(f"the online tier ran out of space after {len(recalled)} file(s); those are "
                              "recorded, the rest stay offline (nothing lost)") from error
        raise error
    summary = {"recall_id": recall_id, "studies": studies.num_rows, "images_copied": len(recalled),
               "images_already_online": len(images) - len(todo), "bytes_copied": need,
               "pinned_until": pin.isoformat()}
    log.info("recall: %s", summary)
    return summary


def _recall_one(cfg: Config, r: dict[str, Any]) -> str:
    data = transfer.read_verified(cfg.offline, r["offline_uri"], r["sha256"], r["offline_offset"],
                                  r["offline_length"])
    key = image_key(r["study_date"], r["study_instance_uid"], r["series_instance_uid"], r["sop_instance_uid"])
    path = cfg.online.path(key)
    # a file already at the path is kept only if it is exactly this image
    if not store.write(cfg.online, path, data, r["sha256"], fsync=cfg.ingest.fsync) \
            and store.hash_at(cfg.online, path) != r["sha256"]:
        store.write(cfg.online, path, data, r["sha256"], fsync=cfg.ingest.fsync, overwrite=True)
    return cfg.online.uri(path)
