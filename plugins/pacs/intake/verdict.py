"""What intake would do with one file, without taking it in: the verdict of ``pacs header``.

The file is read as the process step reads a landing file (once into memory when it is local
and at most :data:`~pacs.intake.process.MEMORY_LIMIT`, else through small-block reads) and
judged by the same function, :func:`pacs.dicom.validation.judge`, so the verdict on the file
itself is exactly intake's: catalogued, or quarantined with its reason code.

The merge's outcomes need the catalogue: an identical duplicate of a catalogued image,
``sop_conflict``, ``patient_mismatch``, ``series_conflict``. Given a configuration whose
catalogue exists, they are looked up read-only in the merge's order
(``include/sql/header_verdict.sql``), and the online tier is asked whether it already holds
other bytes at the image's path; otherwise the verdict says what was not checked. What the
merge decides between files that arrive together (the first received wins) cannot be foreseen
for one file. Nothing is written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pacs import store
from pacs.catalogue import opened, sql
from pacs.config import Config
from pacs.dicom import HeaderError, read_header, read_header_bytes
from pacs.dicom.layout import image_key
from pacs.dicom.validation import SOP_CONFLICT, judge
from pacs.errors import CatalogueBusyError, UnreadableError, UsageError
from pacs.intake.process import MEMORY_LIMIT
from pacs.store import Location

Outcome = Literal["catalogued", "duplicate", "quarantined"]

# The merge's own details (include/sql/merge_decide.sql) for the outcomes one file can meet alone.
_MERGE_DETAILS = {
    "sop_conflict": "the SOP instance is already catalogued with different bytes",
    "patient_mismatch": "the study is already catalogued, or was received earlier, under another patient ID",
    "series_conflict": "the series is already catalogued, or was received earlier, under another study",
}
_ONLINE_HOLDS_OTHER = "the online tier already holds different, uncatalogued bytes for this SOP instance"
_NOT_CHECKED = ("the file alone: duplicates and conflicts with what is catalogued (sop_conflict, patient_mismatch, "
                "series_conflict) are decided by the merge; name a configuration to check them")


@dataclass(frozen=True)
class Verdict:
    """What intake would do with one file, and what that was checked against."""

    file: str
    size_bytes: int
    sha256: str
    outcome: Outcome
    reason: str | None  # the quarantine reason code
    detail: str | None
    header: dict[str, Any] | None  # the catalogue's fields (patient data); None when unreadable
    checked: str

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _read(loc: Location, size: int) -> tuple[str, dict[str, Any] | None, HeaderError | None]:
    """sha256, header and the reader's problem, read the way the process step reads."""
    small = store.read_small(loc, loc.root, size, MEMORY_LIMIT)
    sha256 = store.hash_bytes(small[0]) if small is not None else store.hash_at(loc, loc.root) or ""
    try:
        header = read_header_bytes(small[0]) if small is not None else read_header(loc.fs, loc.root, size=size)
    except HeaderError as exc:
        return sha256, None, exc
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - as the process step: a file that breaks the reader is unreadable
        return sha256, None, UnreadableError(f"could not be examined ({type(exc).__name__})")
    return sha256, header, None


def _merge_outcome(cfg: Config, header: dict[str, Any], sha256: str) -> tuple[str | None, str]:
    """What the merge would decide for this file alone: ``duplicate``, a reason code or None
    (catalogued), and what it was checked against (read-only)."""
    outcome: str | None = None
    if not cfg.duckdb.exists():
        checked = f"the catalogue {cfg.duckdb} (it does not exist yet: nothing to conflict with)"
    else:
        query = sql.load("header_verdict")
        params = {**{k: header[k] for k in ("sop_instance_uid", "study_instance_uid", "series_instance_uid",
                                            "patient_id")}, "sha256": sha256}
        try:
            with opened(cfg.duckdb, read_only=True, timeout=10.0) as con:
                outcome = con.execute(query, sql.params_for(query, params)).fetchall()[0][0]
        except CatalogueBusyError:
            return None, (f"the file alone: the catalogue {cfg.duckdb} is being written by a merge, so duplicates "
                          "and conflicts were not checked; try again in a moment")
        checked = f"the catalogue {cfg.duckdb}"
    if outcome is None:
        key = image_key(header["study_date"], header["study_instance_uid"], header["series_instance_uid"],
                        header["sop_instance_uid"])
        held = store.hash_at(cfg.online, cfg.online.path(key))
        if held is not None and held != sha256:
            outcome = "online_holds_other"
    return outcome, f"{checked} and the online tier {store.where(cfg.online)}, read-only"


def judge_file(url: str, cfg: Config | None = None) -> Verdict:
    """Read one file (a local path or an fsspec URL) and say what intake would do with it.

    Parameters
    ----------
    url
        The file.
    cfg
        The archive whose catalogue and online tier the merge's outcomes are checked against
        (read-only); None to judge the file alone.

    Raises
    ------
    UsageError
        The file does not exist, is a folder or cannot be read by this user.
    """
    loc = Location.at("file", url)
    try:
        info = loc.fs.info(loc.root)
    except FileNotFoundError:
        raise UsageError(f"{url}: no such file; check the path") from None
    except PermissionError:
        raise UsageError(f"{url}: not readable by this user; check its permissions") from None
    if info.get("type") == "directory":
        raise UsageError(f"{url} is a folder; name one file")
    size = int(info.get("size") or 0)
    sha256, header, problem = _read(loc, size)
    base = {"file": url, "size_bytes": size, "sha256": sha256}
    rejection = judge(header, problem)
    if rejection is not None:
        return Verdict(**base, outcome="quarantined", reason=rejection.reason, detail=rejection.detail,
                       header=header, checked="the file alone (it is quarantined before the merge reads the catalogue)")
    assert header is not None
    if cfg is None:
        return Verdict(**base, outcome="catalogued", reason=None, detail=None, header=header, checked=_NOT_CHECKED)
    outcome, checked = _merge_outcome(cfg, header, sha256)
    if outcome is None:
        return Verdict(**base, outcome="catalogued", reason=None, detail=None, header=header, checked=checked)
    if outcome == "duplicate":
        return Verdict(**base, outcome="duplicate", reason=None, header=header, checked=checked,
                       detail="an identical copy of a catalogued image (not stored again; removed from landing)")
    if outcome == "online_holds_other":
        return Verdict(**base, outcome="quarantined", reason=SOP_CONFLICT, detail=_ONLINE_HOLDS_OTHER, header=header,
                       checked=checked)
    return Verdict(**base, outcome="quarantined", reason=outcome, detail=_MERGE_DETAILS[outcome], header=header,
                   checked=checked)
