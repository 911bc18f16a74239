"""De-identified copies for a cohort export: DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile, with the analysts' pseudonym key.

:class:`Deidentifier` turns one archived file's bytes into the bytes of a de-identified DICOM
Part-10 file. It only ever sees bytes, so the archive's originals are never touched. It holds
nothing but the key, so one instance serves a whole export and all its threads, and two
instances with the same key write byte-identical files for the same input.

**Attributes, at every depth** (items of sequences included), get the action of PS3.15 Table
E.1-1 (X remove, Z empty, D dummy value, U new UID), read from the table dicom-anonymizer ships
(edition :data:`TABLE_EDITION`, 655 attributes). Where the table leaves a choice that depends on
the attribute's type in the IOD (Z/D, X/Z, X/D, X/Z/D, X/Z/U*), the choice that keeps every IOD
conformant is taken without knowing the IOD: D over Z over X, and for the referenced-instance
sequences (X/Z/U*) U: the sequence stays and the UIDs in it are remapped. A sequence given D
keeps its items; in them a listed attribute gets its own action and any other a dummy. Dummies
are fixed per VR (``ANONYMIZED``, 0, ``19000101``, ``000000``), never derived from the value.

**Patient.** PatientID becomes ``pseudonym(key, "patient", PatientID)`` of
:mod:`pacs.analyst.deid`: the ``patient_key`` of the analysts' de-identified views, so an
exported file joins them (the caller may pass the catalogue's effective PatientID, which a
patient merge can make differ from the header's). PatientName becomes the same pseudonym (the
table allows a dummy for its Z). AccessionNumber is emptied (the table's Z): the views have no
accession pseudonym, and a 32-digit pseudonym would not fit its VR (SH, 16 characters).

**UIDs.** Every instance UID (the table's U attributes, UIDs inside sequences, and
MediaStorageSOPInstanceUID) becomes :meth:`Deidentifier.uid`: ``2.25.`` and the decimal of a
UUID (RFC 9562 version 8 layout) made of 122 bits of HMAC-SHA256(key, ``"uid"`` NUL uid), at
most 44 characters. The same UID maps to the same new UID in every file and every export with
the key, so references (a series' study, an RT plan's structure set, an image's frame of
reference) stay consistent, and without the key the mapping cannot be computed from a known
UID. SOP Class, Transfer Syntax and registry UIDs (coding schemes, mapping resources, context
groups, anything under the DICOM root ``1.2.840.10008``) are kept: they identify no one.

**Dates and times: the Basic profile, no Retain Longitudinal Temporal Information option.**
StudyDate/Time, PatientBirthDate and the other Z dates are emptied; ContentDate/Time,
SeriesDate/Time, AcquisitionDateTime and the other D or X/D ones get the dummy 19000101 /
000000; X ones are removed. No original date or time survives in the header, and
LongitudinalTemporalInformationModified is ``REMOVED``. (The analysts' views keep the study
year; an export that needs intervals would need the option, which this module does not offer.)

**Removed as well:** every private attribute (and private creator), the curve groups 50xx, the
whole overlay planes 60xx (the table removes Overlay Data and Overlay Comments; a plane without
its data is not a valid plane), group lengths and trailing padding. The File Meta Information
is rebuilt (only SOP class, new SOP instance UID and transfer syntax are kept; no sender's AE
title or private meta survives) and the 128-byte preamble is zeroed (a dual-personality file
keeps a TIFF header there). **Added:** PatientIdentityRemoved ``YES``, DeidentificationMethod,
and DeidentificationMethodCodeSequence with (113100, DCM, "Basic Application Confidentiality
Profile").

**Stricter than the table:** a UI attribute the table does not list (such as
SOPInstanceUIDOfConcatenationSource or TargetFrameOfReferenceUID, which hold instance UIDs) is
remapped like a U one, and a PN attribute it does not list is emptied, so an original UID or a
person's name in an attribute newer than the table cannot slip through.

**Pixel data** is copied as it is: its bytes and the transfer syntax are unchanged and nothing
is decoded, so compressed files work. An instance whose BurnedInAnnotation is ``YES`` is
refused (:class:`~pacs.errors.DeidentificationError`, reason ``burned_in_annotation``): the
profile's Clean Pixel Data option is not offered, and such a file is not de-identified by its
header alone (an export leaves it out and lists it). Not applied either: the Clean
Descriptors, Clean Structured Content and Clean Graphics options (descriptions are removed or
dummied as the table says instead), and the text inside compressed pixel streams (JPEG
comments) is not inspected.

Nothing is logged, and errors name no patient data (a refusal names the original SOP Instance
UID, as the export's other errors do, so the operator can find the file).

**Why dicom-anonymizer (for its table) and pydicom (for the work).** The candidates on PyPI:

- *dicom-anonymizer* 2.1.0 (Kitware, BSD): the only one that implements PS3.15 Table E.1-1 as
  such, with the table kept as data per edition of the standard (2023, 2024b, 2026c) and the
  profile's action codes as categories. Its actions do not fit an export: U draws random UIDs
  (``generate_uid``) into a module-global dict, the listed attributes are acted on at the top
  level only (UIDs and names inside sequences survive), X on a date writes ``00010101`` instead
  of removing it, an X/Z/U* sequence has its UIDs emptied rather than remapped, and it prints.
  Its maintainers say they plan no new features but keep the table current. So this module
  takes its table (:func:`profile_table`) and applies the actions itself with pydicom.
- *dicognito* 0.19.0: deterministic with a seed (MD5 of seed + value, not a keyed MAC), it
  replaces every PN, UI, date and a list of IDs with plausible fakes and shifts dates. It does
  not follow Table E.1-1 (it has no table), keeps private attributes, and its pseudonyms (fake
  names) cannot be the analysts' HMAC pseudonyms; driving it would mean replacing most of it.
- *deid* 0.4.13 (pydicom's organisation): a recipe engine. Its default recipe is a site's
  (Stanford's) list of name patterns (``REMOVE endswith:ID``), not Table E.1-1; its stable UID
  remapping is ``generate_uid`` with the original UID as entropy, unkeyed, so anyone holding an
  original UID can find its new one. A Basic-profile recipe would have to be written by hand.
- *pydicom* 3.0.2 itself has no profile: it gives ``Dataset.remove_private_tags``,
  ``generate_uid`` and the data dictionary, which this module uses.
"""

from __future__ import annotations

import functools
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacs.analyst.deid import MIN_KEY_LENGTH, pseudonym
from pacs.errors import ConfigError, DeidentificationError

# Quiet pydicom's per-file warnings about odd-but-readable values (they can quote a value).
logging.getLogger("pydicom").setLevel(logging.ERROR)

TABLE_EDITION = "dicomfields_2026c"
"""The edition of PS3.15 Table E.1-1 (as dicom-anonymizer names it) the profile is applied from."""

PATIENT_KIND = "patient"  # the kind include/sql/views_deid.sql gives patient ids: an export joins the views
UID_KIND = "uid"
DICOM_ROOT = "1.2.840.10008."
DEIDENTIFICATION_METHOD = "DICOM PS3.15 Basic Profile; HMAC-SHA256 pseudonyms and UIDs"
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

Action = Literal["X", "Z", "D", "U", "K"]
"""Remove, empty, dummy value, new UID, keep (an attribute the table does not list)."""

# The table's categories and the action taken for each: where the table leaves the choice to the
# IOD's attribute type, the one that keeps any IOD conformant (D over Z over X; U for X/Z/U*).
_CATEGORY_ACTION: dict[str, Action] = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U",
    "Z_D_TAGS": "D", "X_Z_TAGS": "Z", "X_D_TAGS": "D", "X_Z_D_TAGS": "D", "X_Z_U_STAR_TAGS": "U",
}
# UIDs of registries, not of instances: kept whatever their value (private SOP classes included).
_REGISTRY_UID_PARTS = ("ClassUID", "TransferSyntaxUID", "SOPClasses")
_REGISTRY_UID_KEYWORDS = frozenset({"CodingSchemeUID", "MappingResourceUID", "ContextUID"})

_PATIENT_ID = Tag("PatientID")
_PATIENT_NAME = Tag("PatientName")
_TRAILING_PADDING = Tag(0xFFFC, 0xFFFC)

_TEXT_VRS = frozenset({"AE", "CS", "SH", "LO", "ST", "LT", "UT", "UC", "PN", "UR"})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_DUMMY_TEXT = "ANONYMIZED"  # fits every text VR, CS's 16 upper-case characters included
_DUMMY_BY_VR: dict[str, Any] = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D",
                                "DS": "0", "IS": "0"}
_DUMMY_BYTES = b"\x00" * 8  # a whole number of values of every binary VR


@dataclass(frozen=True)
class ProfileTable:
    """PS3.15 Table E.1-1 as actions: single tags, and the repeating groups (curves, overlays)
    as (group, element, group mask, element mask)."""

    single: dict[int, Action]
    masked: tuple[tuple[int, int, int, int, Action], ...]

    def action(self, tag: int) -> Action | None:
        """The table's action for ``tag``, or None when the table does not list it."""
        found = self.single.get(tag)
        if found is not None:
            return found
        group, element = tag >> 16, tag & 0xFFFF
        for g, e, gmask, emask, act in self.masked:
            if group & gmask == g & gmask and element & emask == e & emask:
                return act
        return None


@functools.cache
def profile_table() -> ProfileTable:
    """Table E.1-1 of edition :data:`TABLE_EDITION`, from dicom-anonymizer's copy."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    categories = dicom_anonymization_database_selector(TABLE_EDITION)
    single: dict[int, Action] = {}
    masked: list[tuple[int, int, int, int, Action]] = []
    for category, action in _CATEGORY_ACTION.items():
        for entry in categories[category]:
            if len(entry) == 2:
                single[(entry[0] << 16) | entry[1]] = action
            else:
                masked.append((*entry, action))
    return ProfileTable(single, tuple(masked))


class Deidentifier:
    """The Basic Application Level Confidentiality Profile with the analysts' pseudonym key.

    Parameters
    ----------
    key : bytes
        The pseudonym key of :func:`pacs.analyst.deid.pseudonym_key`, at least 16 bytes.

    Raises
    ------
    ConfigError
        The key is shorter than 16 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"the pseudonym key is too short ({len(key)} bytes); use at least {MIN_KEY_LENGTH}")
        self._key = key
        self._table = profile_table()

    def uid(self, uid: str) -> str:
        """The new UID of ``uid``: the same for the same key, everywhere (see the module text).
        Registry UIDs (under the DICOM root) and the empty value are returned as they are."""
        if not uid or uid.startswith(DICOM_ROOT):
            return uid
        n = int(pseudonym(self._key, UID_KIND, uid), 16)  # 128 bits
        n = (n & ~(0xF << 76) & ~(0x3 << 62)) | (0x8 << 76) | (0x2 << 62)  # UUID version 8, RFC variant
        return f"2.25.{n}"

    def patient_pseudonym(self, patient_id: str) -> str:
        """The PatientID written for ``patient_id``: the views' ``patient_key`` of that patient."""
        return pseudonym(self._key, PATIENT_KIND, patient_id)

    def __call__(self, data: bytes, *, patient_id: str | None = None) -> bytes:
        """De-identify one file.

        Parameters
        ----------
        data : bytes
            A DICOM file (Part 10, or a bare dataset as the archive accepts it).
        patient_id : str, optional
            The PatientID to pseudonymise (the catalogue's effective one); the header's if None.

        Returns
        -------
        bytes
            The de-identified DICOM Part-10 file, in the original transfer syntax.

        Raises
        ------
        DeidentificationError
            Not a DICOM instance, or its BurnedInAnnotation is YES.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _read(data)
            sop_instance = str(ds.get("SOPInstanceUID", "") or "")
            if not sop_instance:
                raise DeidentificationError("not a DICOM instance: it has no SOP Instance UID", "no_sop_instance_uid")
            if str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES":
                raise DeidentificationError(
                    f"SOP instance {sop_instance} has burned-in annotation (BurnedInAnnotation YES): its pixels may "
                    "show identifiers, and the Basic profile's header actions cannot remove them; leave it out",
                    "burned_in_annotation")
            original = patient_id if patient_id is not None else str(ds.get("PatientID", "") or "")
            meta = _new_file_meta(ds, self.uid)
            self._clean(ds, dummy=False)
            self._mark(ds, self.patient_pseudonym(original))
            ds.file_meta = meta
            ds.preamble = None  # written as 128 zero bytes
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    # --- the walk --------------------------------------------------------------------------------

    def _clean(self, ds: Dataset, *, dummy: bool) -> None:
        """Apply the profile to every attribute of ``ds`` and its sequences' items; inside a
        sequence given D (``dummy``) an attribute the table does not list gets a dummy."""
        for tag in list(ds.keys()):
            action = self._action(tag, dummy)
            if action == "X":
                del ds[tag]
                continue
            elem = ds[tag]
            if elem.VR == "SQ":
                if action == "Z":
                    elem.value = Sequence()
                else:
                    for item in elem.value:
                        self._clean(item, dummy=action == "D")
            elif tag == _PATIENT_ID:
                elem.value = self.patient_pseudonym(str(elem.value or ""))
            elif elem.VR == "UI":
                if action == "Z":
                    elem.value = ""
                else:  # U, and D or K too: a dummy UID must be unique, an unlisted one may be an instance's
                    elem.value = self._new_uids(elem)
            elif action == "K" and elem.VR == "PN":
                elem.value = ""
            elif action == "Z":
                elem.value = _empty(elem.VR)
            elif action in ("D", "U"):
                elem.value = _dummy(elem)

    def _action(self, tag: BaseTag, dummy: bool) -> Action:
        if tag.is_private or tag.element == 0 or tag == _TRAILING_PADDING or _is_overlay_plane(tag.group):
            return "X"
        listed = self._table.action(tag)
        if listed is not None:
            return listed
        return "D" if dummy else "K"

    def _new_uids(self, elem: DataElement) -> Any:
        keyword = elem.keyword
        if keyword in _REGISTRY_UID_KEYWORDS or any(part in keyword for part in _REGISTRY_UID_PARTS):
            return elem.value
        if isinstance(elem.value, MultiValue | list):
            return [self.uid(str(v)) for v in elem.value]
        return self.uid(str(elem.value or ""))

    @staticmethod
    def _mark(ds: Dataset, patient: str) -> None:
        """The patient's pseudonym and the attributes that say how the file was de-identified."""
        ds.PatientID = patient
        ds.PatientName = patient
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        methods = _values(ds.get("DeidentificationMethod"))
        if DEIDENTIFICATION_METHOD not in methods:
            methods.append(DEIDENTIFICATION_METHOD)
        ds.DeidentificationMethod = methods[0] if len(methods) == 1 else methods
        codes = ds.get("DeidentificationMethodCodeSequence") or Sequence()
        if not any(item.get("CodeValue") == BASIC_PROFILE_CODE[0] for item in codes):
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = BASIC_PROFILE_CODE
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = codes


def _read(data: bytes) -> Dataset:
    has_preamble = data[128:132] == b"DICM"
    try:
        return pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except InvalidDicomError as exc:
        raise DeidentificationError(f"not a DICOM file: {exc}", "not_dicom") from exc


def _new_file_meta(ds: Dataset, new_uid: Any) -> FileMetaDataset:
    """File Meta Information with only what identifies nothing: the SOP class, the transfer
    syntax (the original one, or the encoding the dataset was read in) and the new instance UID;
    pydicom adds its implementation UID and version when writing."""
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = old.get("MediaStorageSOPClassUID") or ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = new_uid(str(old.get("MediaStorageSOPInstanceUID") or ds.SOPInstanceUID))
    meta.TransferSyntaxUID = old.get("TransferSyntaxUID") or _read_encoding(ds)
    return meta


def _read_encoding(ds: Dataset) -> UID:
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _is_overlay_plane(group: int) -> bool:
    return 0x6000 <= group <= 0x601E and group % 2 == 0


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, MultiValue | list) else [str(value)]


def _empty(vr: str) -> Any:
    """A zero-length value of ``vr``."""
    if vr in _BINARY_VRS or vr.startswith("O") or ("O" in vr and " or " in vr):
        return b""
    if vr in _NUMBER_VRS or " or " in vr or vr == "AT":
        return None
    return ""


def _dummy(elem: DataElement) -> Any:
    """A fixed non-empty value of the element's VR (an AT, a reference to a tag, is kept)."""
    vr = elem.VR
    if vr in _TEXT_VRS:
        return _DUMMY_TEXT
    if vr in _DUMMY_BY_VR:
        return _DUMMY_BY_VR[vr]
    if vr in _BINARY_VRS or ("O" in vr and " or " in vr):
        return _DUMMY_BYTES
    if vr in _NUMBER_VRS or " or " in vr:
        return 0
    return elem.value

