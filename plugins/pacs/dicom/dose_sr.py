"""Radiation Dose Structured Reports: the irradiation events and totals a dose SR records.

A dose SR is an X-Ray Radiation Dose SR (SOP class ``1.2.840.10008.5.1.4.1.1.88.67``, or the
Enhanced one, ``.88.76``) whose content tree follows TID 10011 *CT Radiation Dose* or TID 10001
*Projection X-Ray Radiation Dose*. :func:`dose_report` walks the tree of the dataset the header
reader already parsed (a dose SR has no pixel data: its content tree is its header) and returns
a small JSON text that travels in the staged row (column ``dose_report``) to the merge, which
records one ``dose_report`` row per SR and one ``dose_event`` row per irradiation event
(``include/sql/merge_departmental.sql``).

What is read, by DCM concept code (the scheme is checked):

* CT Irradiation Event Data (TID 10013, container *CT Acquisition* 113819): Acquisition Protocol
  (125203), Target Region (123014), CT Acquisition Type (113820), Irradiation Event UID (113769),
  Scanning Length (113825), Mean CTDIvol (113830), DLP (113838);
* Projection X-Ray Irradiation Event Data (TID 10003, container 113706): Acquisition Protocol,
  Target Region, Irradiation Event Type (113721), Irradiation Event UID, Dose Area Product
  (122130), Dose (RP) (113738);
* the accumulated totals: CT Accumulated Dose Data (TID 10012, 113811): Total Number of Irradiation
  Events (113812), CT Dose Length Product Total (113813); Accumulated X-Ray Dose Data (TID 10002,
  113702, one per acquisition plane, summed): Dose Area Product Total (113722), Dose (RP) Total (113725).

Numeric values are converted to the template's units (mGy, mGy.cm, mm, Gy.m2, Gy) from the UCUM
unit the report gives (e.g. ``dGy.cm2`` to ``Gy.m2``). Like acquisition values, a value that
cannot be read (not a number, an unknown unit, a negative dose, a corrupt item) is left empty and
its name listed in ``invalid``; a content tree that cannot be read at all gives a report with no
events and ``ContentSequence`` in ``invalid``. A dose SR is never quarantined for its content.
Parse-light; only codes, numbers, UIDs and the protocol's name are read, never a person's name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pacs.dicom.validation import is_valid_uid
from pacs.errors import PacsError

DOSE_SR_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.76": "Enhanced X-Ray Radiation Dose SR",
}

CT_EVENT = "113819"          # CT Acquisition (TID 10013)
PROJECTION_EVENT = "113706"  # Irradiation Event X-Ray Data (TID 10003)
CT_ACCUMULATED = "113811"    # CT Accumulated Dose Data (TID 10012)
PROJECTION_ACCUMULATED = "113702"  # Accumulated X-Ray Dose Data (TID 10002)

ACQUISITION_PROTOCOL = "125203"
TARGET_REGION = "123014"
CT_ACQUISITION_TYPE = "113820"
IRRADIATION_EVENT_TYPE = "113721"
IRRADIATION_EVENT_UID = "113769"

# concept code -> (JSON key, the template's unit), for the numbers read
EVENT_NUMBERS: dict[str, tuple[str, str]] = {
    "113830": ("ctdivol_mgy", "mGy"),                 # Mean CTDIvol
    "113838": ("dlp_mgycm", "mGy.cm"),                # DLP
    "113825": ("scanning_length_mm", "mm"),           # Scanning Length
    "122130": ("dose_area_product_gym2", "Gy.m2"),    # Dose Area Product
    "113738": ("dose_rp_gy", "Gy"),                   # Dose (RP)
}
TOTAL_NUMBERS: dict[str, tuple[str, str]] = {
    "113812": ("reported_event_count", "{events}"),            # Total Number of Irradiation Events
    "113813": ("dlp_total_mgycm", "mGy.cm"),                   # CT Dose Length Product Total
    "113722": ("dose_area_product_total_gym2", "Gy.m2"),       # Dose Area Product Total
    "113725": ("dose_rp_total_gy", "Gy"),                      # Dose (RP) Total
}
_NAMES = {"113830": "CTDIvol", "113838": "DLP", "113825": "ScanningLength", "122130": "DoseAreaProduct",
          "113738": "DoseRP", "113812": "TotalNumberOfIrradiationEvents", "113813": "DLPTotal",
          "113722": "DoseAreaProductTotal", "113725": "DoseRPTotal", IRRADIATION_EVENT_UID: "IrradiationEventUID"}

UNIT_SCALE: dict[str, dict[str, float]] = {
    "mGy": {"mGy": 1.0, "Gy": 1e3, "cGy": 10.0, "dGy": 100.0, "uGy": 1e-3},
    "mGy.cm": {"mGy.cm": 1.0, "mGy.mm": 0.1, "cGy.cm": 10.0, "Gy.cm": 1e3, "uGy.cm": 1e-3, "mGy.m": 100.0},
    "mm": {"mm": 1.0, "cm": 10.0, "m": 1e3},
    "Gy.m2": {"Gy.m2": 1.0, "mGy.m2": 1e-3, "uGy.m2": 1e-6, "Gy.cm2": 1e-4, "dGy.cm2": 1e-5, "cGy.cm2": 1e-6,
              "mGy.cm2": 1e-7, "uGy.cm2": 1e-10},
    "Gy": {"Gy": 1.0, "dGy": 0.1, "cGy": 1e-2, "mGy": 1e-3, "uGy": 1e-6},
    "{events}": {},  # a count: any unit
}
"""The template's unit -> the UCUM units a report may use instead, with their factor to it."""

_MAX_DEPTH = 16  # the dose templates nest a few levels; deeper is a malformed (or hostile) tree


class _Unreadable(PacsError):
    """A content item that cannot be read. Internal to this module, never raised
    out of it; a PacsError like every error of the package."""


def _text(value: Any) -> str | None:
    text = str(value if value is not None else "").strip().rstrip("\x00").strip()
    return text or None


def _first(ds: Dataset, keyword: str) -> Dataset | None:
    try:
        seq = ds.get(keyword)
    except OSError:
        raise  # reading a deferred value failed: the file's fault is not its content's
    except Exception as exc:  # pydicom's errors on a corrupt item
        raise _Unreadable from exc
    if not seq:
        return None
    try:
        return seq[0]
    except (TypeError, IndexError, KeyError) as exc:
        raise _Unreadable from exc


def _concept(item: Dataset) -> tuple[str | None, str | None]:
    """(code value, scheme) of an item's concept name."""
    name = _first(item, "ConceptNameCodeSequence")
    if name is None:
        return None, None
    return _text(name.get("CodeValue")), _text(name.get("CodingSchemeDesignator"))


def _children(item: Dataset) -> list[Dataset]:
    try:
        return list(item.get("ContentSequence") or [])
    except OSError:
        raise
    except Exception as exc:  # a corrupt nested sequence
        raise _Unreadable from exc


def _number(item: Dataset, unit: str) -> float | None:
    """A NUM item's value in ``unit``; raises :class:`_Unreadable` for one that cannot be read."""
    measured = _first(item, "MeasuredValueSequence")
    if measured is None:
        return None  # a NUM without a value (TID 1400's "no value" form)
    try:
        raw = measured.get("NumericValue")
    except Exception as exc:  # pydicom cannot convert the DS
        raise _Unreadable from exc
    text = _text(raw[0] if isinstance(raw, list | tuple) or type(raw).__name__ == "MultiValue" else raw)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise _Unreadable from exc
    if not math.isfinite(value) or value < 0:
        raise _Unreadable
    units = _first(measured, "MeasurementUnitsCodeSequence")
    given = _text(units.get("CodeValue")) if units is not None else None
    if given is None or given == unit or not UNIT_SCALE[unit]:
        return value
    factor = UNIT_SCALE[unit].get(given)
    if factor is None:
        raise _Unreadable
    return value * factor


def _code(item: Dataset) -> tuple[str | None, str | None]:
    """(code meaning, scheme:code) of a CODE item's value."""
    code = _first(item, "ConceptCodeSequence")
    if code is None:
        return None, None
    value, scheme = _text(code.get("CodeValue")), _text(code.get("CodingSchemeDesignator"))
    return _text(code.get("CodeMeaning")), f"{scheme}:{value}" if value and scheme else value


def _walk(items: list[Dataset], depth: int = 0) -> Iterator[tuple[str | None, Dataset]]:
    """Every item below ``items`` with its DCM concept code (depth first, in document order)."""
    if depth > _MAX_DEPTH:
        raise _Unreadable
    for item in items:
        code, scheme = _concept(item)
        yield (code if scheme == "DCM" else None), item
        if code in (CT_EVENT, PROJECTION_EVENT, CT_ACCUMULATED, PROJECTION_ACCUMULATED) and scheme == "DCM":
            continue  # read whole by its reader below
        yield from _walk(_children(item), depth + 1)


def _value(code: str, item: Dataset, numbers: dict[str, tuple[str, str]], out: dict[str, Any]) -> None:
    """One content item's value into ``out``, unless a value of its concept is there already."""
    if code in numbers:
        key, unit = numbers[code]
        if key not in out:
            value = _number(item, unit)
            if value is not None:
                out[key] = value
    elif code == ACQUISITION_PROTOCOL and "acquisition_protocol" not in out:
        out["acquisition_protocol"] = _text(item.get("TextValue"))
    elif code == TARGET_REGION and "target_region" not in out:
        out["target_region"], out["target_region_code"] = _code(item)
    elif code in (CT_ACQUISITION_TYPE, IRRADIATION_EVENT_TYPE) and "acquisition_type" not in out:
        out["acquisition_type"] = _code(item)[0]
    elif code == IRRADIATION_EVENT_UID and "irradiation_event_uid" not in out:
        out["irradiation_event_uid"] = _event_uid(item)


def _values(container: Dataset, numbers: dict[str, tuple[str, str]], out: dict[str, Any],
            invalid: list[str]) -> None:
    """The first value of each concept of interest in ``container``'s subtree, into ``out``; the
    name of a value that cannot be read into ``invalid``."""
    for code, item in _walk(_children(container)):
        if code is None:
            continue
        try:
            _value(code, item, numbers, out)
        except OSError:
            raise  # reading a deferred value failed: the file's fault, not its content's
        except Exception:  # noqa: BLE001 - _Unreadable, or pydicom failing to convert the item's value
            name = _NAMES.get(code, code)
            if name not in invalid:
                invalid.append(name)


def _event_uid(item: Dataset) -> str | None:
    uid = _text(item.get("UID"))
    if uid is not None and not is_valid_uid(uid):
        raise _Unreadable
    return uid


def _template(ds: Dataset) -> str | None:
    try:
        template = _first(ds, "ContentTemplateSequence")
    except _Unreadable:
        return None
    return _text(template.get("TemplateIdentifier")) if template is not None else None


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != []}


def _event(code: str, item: Dataset, ordinal: int) -> dict[str, Any]:
    """One irradiation event container's values (its unreadable ones named in ``invalid``)."""
    event: dict[str, Any] = {"ordinal": ordinal, "event_kind": "ct" if code == CT_EVENT else "projection"}
    bad: list[str] = []
    try:
        _values(item, EVENT_NUMBERS, event, bad)
    except OSError:
        raise
    except Exception:  # noqa: BLE001 - _Unreadable, or a structure pydicom cannot convert
        bad.append("ContentSequence")
    event["invalid"] = bad
    return _clean(event)


def _read_tree(ds: Dataset, report: dict[str, Any], events: list[dict[str, Any]],
               planes: list[dict[str, Any]], invalid: list[str]) -> None:
    """Walk the content tree: events into ``events``, accumulated data into ``planes`` (one per
    acquisition plane; CT has one), the report's kind from what it accumulates."""
    for code, item in _walk(_children(ds)):
        if code in (CT_EVENT, PROJECTION_EVENT):
            events.append(_event(code, item, len(events) + 1))
        elif code in (CT_ACCUMULATED, PROJECTION_ACCUMULATED):
            report["kind"] = "ct" if code == CT_ACCUMULATED else report["kind"] or "projection"
            plane: dict[str, Any] = {}
            _values(item, TOTAL_NUMBERS, plane, invalid)
            planes.append(plane)


def dose_report(ds: Dataset) -> dict[str, Any]:
    """The events and totals of a dose SR's content tree (see the module text), as a dict:
    ``{"kind": "ct" | "projection" | None, "template": "10011" | "10001" | None, <totals>,
    "events": [{"ordinal": 1, <event values>, "invalid": [...]}, ...], "invalid": [...]}``.
    Never raises for the content: what cannot be read is left out and named in ``invalid``."""
    report: dict[str, Any] = {"kind": None, "template": _template(ds)}
    events: list[dict[str, Any]] = []
    invalid: list[str] = []
    planes: list[dict[str, Any]] = []
    try:
        _read_tree(ds, report, events, planes, invalid)
    except OSError:
        raise
    except Exception:  # noqa: BLE001 - _Unreadable, or a structure pydicom cannot convert
        invalid.append("ContentSequence")
    totals: dict[str, float] = {}
    for plane in planes:  # the report's totals are the sum of its acquisition planes'
        for key, value in plane.items():
            totals[key] = totals.get(key, 0.0) + value
    if report["kind"] is None:
        report["kind"] = events[0]["event_kind"] if events else {"10011": "ct", "10001": "projection"}.get(
            report["template"] or "")
    report.update(totals)
    report["event_count"] = len(events)
    report["invalid"] = invalid
    return _clean(report) | {"events": events}


def dose_report_json(ds: Dataset) -> str:
    """:func:`dose_report` as the compact JSON text a staged row carries."""
    return json.dumps(dose_report(ds), separators=(",", ":"), ensure_ascii=False)
