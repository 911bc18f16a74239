"""Identity corrections: a patient merged into another, a study moved to another patient.

The catalogue shows the *effective* patient (``study.patient_id``, and a merged patient's
``patient.merged_into``); the files' bytes are never rewritten, and the header's patient stays
queryable (``study.header_patient_id``, set by a study's first correction). Each correction is
one catalogue transaction (``include/sql/admin_*.sql``): a row of ``correction`` with the keys it
changed as they were, the study and patient rows (stamped ``updated_at = now()``), the aggregates
of both patients; then the Parquet snapshot is refreshed, as every writer does. Later files that
name the old identity follow the correction (``include/sql/merge_decide.sql``), and quarantined
``patient_mismatch`` files resubmitted after it are catalogued.

A user's mistake (an unknown patient or study, a patient merged into itself, a study already
under that patient, a merged patient as the target) is a :class:`~pacs.errors.UsageError`, said
before anything changes. Messages and results name no patient (no PHI in logs or XCom): the
options, and counts. A task retried after its commit finds its correction (same run, action and
patients) and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any, Literal

from pacs import catalogue
from pacs.config import Config
from pacs.errors import UsageError

log = logging.getLogger(__name__)

Action = Literal["patient_merge", "study_move"]


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise UsageError("give a reason for the correction (--reason TEXT)")
    return text


def _patient(con: Any, patient_id: str, option: str) -> str | None:
    """The patient's ``merged_into`` (None: not merged); a UsageError when it is not catalogued."""
    rows = con.execute("SELECT merged_into FROM patient WHERE patient_id = $p", {"p": patient_id}).fetchall()
    if not rows:
        raise UsageError(f"the {option} patient is not in the catalogue; check the patient ID "
                         "(`pacs query \"SELECT patient_id FROM patient\"` lists them)")
    return rows[0][0]


def _done_before(con: Any, action: Action, run_id: str, from_id: str, to_id: str,
                 study: str | None) -> dict[str, Any] | None:
    rows = con.execute(
        "SELECT correction_id FROM correction WHERE run_id = $r AND action = $a AND to_patient_id = $t "
        "AND (from_patient_id = $f OR study_instance_uid = $s)",
        {"r": run_id, "a": action, "f": from_id, "t": to_id, "s": study}).fetchall()
    return {"correction_id": rows[0][0], "action": action, "already_done": True} if rows else None


def _commit(cfg: Config, con: Any, name: str, params: dict[str, Any]) -> None:
    """Run ``admin_<name>.sql`` and the patient aggregates in one transaction, then refresh the snapshot."""
    with catalogue.transaction(con):
        catalogue.run_all(con, (name, "admin_patient_aggregates"), params)
    catalogue.refresh_snapshot(con, cfg.parquet)  # analysts see the effective patient at once


def patient_merge(cfg: Config, *, from_patient: str, into_patient: str, reason: str, run_id: str,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """Merge patient ``from_patient`` into ``into_patient``: every study of the first moves to
    the second, which the first now stands for (``patient.merged_into``).

    Returns the correction's id and the number of studies moved. Raises :class:`UsageError` for
    an unknown patient, a patient merged into itself or a merged patient on either side.
    """
    reason = _reason(reason)
    if from_patient == into_patient:
        raise UsageError("--from and --into name the same patient; a patient cannot be merged into itself")
    with catalogue.opened(cfg.duckdb) as con:
        done = _done_before(con, "patient_merge", run_id, from_patient, into_patient, None)
        if done:
            return done
        if _patient(con, from_patient, "--from") is not None:
            raise UsageError("the --from patient is already merged into another patient")
        if _patient(con, into_patient, "--into") is not None:
            raise UsageError("the --into patient is merged into another patient; merge into that one")
        moved = con.execute("SELECT count(*) FROM study WHERE patient_id = $p", {"p": from_patient}).fetchall()[0][0]
        correction_id = uuid.uuid4().hex
        _commit(cfg, con, "admin_patient_merge", {
            "correction_id": correction_id, "from": from_patient, "into": into_patient, "reason": reason,
            "now": now or dt.datetime.now(dt.UTC), "run_id": run_id})
    out = {"correction_id": correction_id, "action": "patient_merge", "studies_moved": moved}
    log.info("correction: %s", out)
    return out


def study_move(cfg: Config, *, study: str, to_patient: str, reason: str, run_id: str,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """Move study ``study`` to patient ``to_patient`` (its series and images follow: they name
    the study, not the patient).

    Returns the correction's id. Raises :class:`UsageError` for an unknown study or patient, a
    merged target patient, or a study already under that patient.
    """
    reason = _reason(reason)
    with catalogue.opened(cfg.duckdb) as con:
        done = _done_before(con, "study_move", run_id, "", to_patient, study)
        if done:
            return done
        rows = con.execute("SELECT patient_id FROM study WHERE study_instance_uid = $s", {"s": study}).fetchall()
        if not rows:
            raise UsageError("the --study is not in the catalogue; check the StudyInstanceUID "
                             "(`pacs query \"SELECT study_instance_uid FROM study\"` lists them)")
        if _patient(con, to_patient, "--to-patient") is not None:
            raise UsageError("the --to-patient patient is merged into another patient; move the study to that one")
        if rows[0][0] == to_patient:
            raise UsageError("the study is already under the --to-patient patient; nothing to correct")
        correction_id = uuid.uuid4().hex
        _commit(cfg, con, "admin_study_move", {
            "correction_id": correction_id, "study": study, "to": to_patient, "reason": reason,
            "now": now or dt.datetime.now(dt.UTC), "run_id": run_id})
    out = {"correction_id": correction_id, "action": "study_move", "studies_moved": 1}
    log.info("correction: %s", out)
    return out


def correct(cfg: Config, *, action: str | None, run_id: str, reason: str | None,
            from_patient: str | None = None, into_patient: str | None = None, study: str | None = None,
            to_patient: str | None = None, series: str | None = None, sop: str | None = None,
            note: str | None = None) -> dict[str, Any]:
    """One administration action as the ``pacs_admin`` DAG's params name it (a UsageError for a
    missing one): a correction, or ``reject`` (``reason`` is then the IOCM code, ``note`` free text)."""
    if action == "patient_merge":
        if not from_patient or not into_patient:
            raise UsageError("patient_merge needs from_patient and into_patient")
        return patient_merge(cfg, from_patient=from_patient, into_patient=into_patient, reason=reason or "",
                             run_id=run_id)
    if action == "study_move":
        if not study or not to_patient:
            raise UsageError("study_move needs study and to_patient")
        return study_move(cfg, study=study, to_patient=to_patient, reason=reason or "", run_id=run_id)
    if action == "reject":
        from pacs.admin.rejection import reject

        return reject(cfg, study=study, series=series, sop=sop, code=reason, reason=note, run_id=run_id)
    raise UsageError("action must be patient_merge, study_move or reject")
