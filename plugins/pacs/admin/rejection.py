"""Rejection: instances kept in the archive but out of analysts' figures, plans and recall.

An instance is *rejected* when a row of table ``rejection`` names its SOP instance UID
(``include/sql/schema_admin.sql``). Its file and image row stay (``pacs purge`` may delete them
later), but it is left out of the analysts' views (``include/sql/views.sql``, the de-identified
ones show rejections only as counts), lifecycle plans (a rejected instance is not migrated; a
study entirely rejected is not planned), the capacity figures and recall: each of those
anti-joins ``rejection``, so a row that arrives before its instance (a Key Object Selection
rejection note catalogued by intake, :mod:`pacs.dicom.rejection_note`) applies when the instance
comes.

:func:`reject` is ``pacs reject`` and the ``pacs_admin`` DAG's ``reject`` action: the catalogued
instances of one study, series or SOP instance get a row each with one of the four IOCM codes,
in one catalogue transaction (``include/sql/admin_reject*.sql``), then the snapshot is
refreshed. The first rejection of an instance stands; a retry (or a second command) adds no
row. A user's mistake (no or several UIDs, an unknown UID, another code) is a
:class:`~pacs.errors.UsageError` before anything changes. Results and logs are counts only.
"""

from __future__ import annotations

import logging
from typing import Any

from pacs import catalogue
from pacs.config import Config
from pacs.dicom.rejection_note import REJECTION_CODES
from pacs.errors import UsageError

log = logging.getLogger(__name__)

_CODES_TEXT = ", ".join(f"{c} ({m})" for c, m in REJECTION_CODES.items())


def rejection_code(code: str | None) -> tuple[str, str]:
    """The DCM code value and its meaning for ``code`` (``113001``, or ``DCM:113001``)."""
    value = (code or "").strip()
    if value.upper().startswith("DCM:"):
        value = value[4:]
    if value not in REJECTION_CODES:
        raise UsageError(f"--reason must be one of the IOCM rejection codes: {_CODES_TEXT}")
    return value, REJECTION_CODES[value]


def _level(study: str | None, series: str | None, sop: str | None) -> tuple[str, str]:
    given = [(option, uid) for option, uid in (("--study", study), ("--series", series), ("--sop", sop)) if uid]
    if len(given) != 1:
        raise UsageError("name exactly one of --study UID, --series UID or --sop UID")
    return given[0]


def reject(cfg: Config, *, study: str | None = None, series: str | None = None, sop: str | None = None,
           code: str | None, reason: str | None = None, run_id: str) -> dict[str, Any]:
    """Reject every catalogued instance of ``study``, of ``series``, or the instance ``sop``
    (exactly one), with IOCM ``code``; ``reason`` is free text kept with the rows.

    Returns counts: ``instances`` named, ``rejected`` now, ``already_rejected`` (their first
    rejection stands). Raises :class:`UsageError` for a bad code, no or several UIDs, or a UID the
    catalogue does not hold.
    """
    code_value, meaning = rejection_code(code)
    option, uid = _level(study, series, sop)
    params = {"study": uid if option == "--study" else None, "series": uid if option == "--series" else None,
              "sop": uid if option == "--sop" else None}
    with catalogue.opened(cfg.duckdb) as con:
        catalogue.run(con, "admin_reject_targets", params)
        named, before = con.execute(
            "SELECT count(*), count(r.sop_instance_uid) FROM admin_reject_targets t "
            "LEFT JOIN rejection r USING (sop_instance_uid)").fetchall()[0]
        if not named:
            kind = {"--study": "StudyInstanceUID", "--series": "SeriesInstanceUID", "--sop": "SOPInstanceUID"}[option]
            column = {"--study": "study_instance_uid", "--series": "series_instance_uid",
                      "--sop": "sop_instance_uid"}[option]
            raise UsageError(f"the {option} is not in the catalogue; check the {kind} "
                             f"(`pacs query \"SELECT DISTINCT {column} FROM image\"` lists them)")
        if named > before:
            with catalogue.transaction(con):
                catalogue.run(con, "admin_reject", {"code": code_value, "meaning": meaning,
                                                    "reason": (reason or "").strip() or None, "run_id": run_id})
            catalogue.refresh_snapshot(con, cfg.parquet)  # analysts stop seeing them at once
    out = {"action": "reject", "level": option[2:], "code": code_value, "instances": named,
           "rejected": named - before, "already_rejected": before}
    log.info("rejection: %s", out)
    return out
