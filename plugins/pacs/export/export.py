"""Cohort export (``pacs export``, the ``pacs_export`` DAG): from a query to the images.

**Select.** Studies, series or instances by ``query`` (SQL over the analysts' views of the
snapshot, returning any of the columns ``study_instance_uid``, ``series_instance_uid``,
``sop_instance_uid``), by StudyInstanceUID, AccessionNumber or (effective) PatientID. The
instances of the selection and where their copies are come from the live catalogue, read-only
(:func:`select`), so a study the lifecycle moved an hour ago is read from where it now is.
Rejected instances are left out, as the analysts' views leave them out.

**Copy.** Each instance from its fastest copy: the online file, else the offline object, or the
packed member of a series tar with one ranged read of its offset and length. The bytes are
checked against the catalogue's sha256 before anything is written; a copy that does not match
is counted and the next copy is tried (offline after online); an instance no copy of which
matches fails the export with the instances named, after the others were written. Files are
written as ``<patient>/<study>/<series>/<sop>.dcm`` under the target (a local folder or an
``s3://`` prefix): ``<patient>`` is the PatientID when it is a safe path name, else
``patient-<sha256 prefix>``. With ``deidentify`` (:mod:`pacs.export.deidentify`) the written
copies are de-identified with the catalogue's (effective) PatientID, and the path uses their
pseudonym and new UIDs. A file the profile refuses (burned-in annotation) fails only itself: it
is left out, counted and listed in ``refused.csv`` (new UIDs, pseudonym, reason code), and the
export ends ``partial``.

**Fast as a plain copy.** Each file is read once (a local one into its thread's reused buffer),
hashed once, written as read under a temporary name and renamed, with no fsync of its own; the
threads are what the places read and written suit (:func:`pacs.store.read_concurrency`), and
the next chunk is copied while the last one is flushed (``bench/export_rate.py``).

**Resumable, and read-only for the archive.** The export writes nothing to the tiers or the
catalogue. Its progress is the manifest under the target's ``.pacs-export/``: one Parquet part
per chunk of written files, published only after its files were flushed to disk (one
``syncfs`` of a local target per chunk), so a part never lists a file a crash could lose; a
re-run with the same selection and target skips what a part lists. When every chunk is done,
``manifest.parquet`` and ``manifest.csv`` list every exported file: UIDs as written, sha256 and
size of the written file, the tier it was read from and whether its bytes were verified
(always). A de-identified export's manifest holds only the new UIDs and pseudonyms, never the
originals.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pacs import store
from pacs.catalogue import db, sql
from pacs.config import Config
from pacs.dicom.validation import is_valid_uid
from pacs.errors import CatalogueMissingError, CorruptCopyError, DeidentificationError, UsageError
from pacs.store import Location

log = logging.getLogger(__name__)

STATE = ".pacs-export"
"""The export's own folder under the target: the selection, its manifest parts, the manifest."""
CHUNK = 200
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
UID_COLUMNS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")
MANIFEST_COLUMNS = ("patient", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "path", "sha256",
                    "size_bytes", "source_tier", "verified")
REFUSED_COLUMNS = ("patient", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "source_tier", "reason")
AHEAD = 2
"""Chunks in flight: the next chunk's files are copied while the last one is flushed and its
manifest part published, so the workers never wait for the disk."""


@dataclass
class Selection:
    """What to export: UIDs by level (a union), from any of the selectors."""

    studies: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    sops: set[str] = field(default_factory=set)
    accessions: set[str] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.studies or self.series or self.sops or self.accessions or self.patients)

    def digest(self) -> str:
        body = json.dumps({k: sorted(v) for k, v in self.__dict__.items()}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def selection(cfg: Config, *, query: str | None = None, studies: Sequence[str] = (), accessions: Sequence[str] = (),
              patient_ids: Sequence[str] = (), series: Sequence[str] = (), sops: Sequence[str] = ()) -> Selection:
    """The selectors as one :class:`Selection` (the query runs over the analysts' snapshot views)."""
    sel = Selection(set(studies), set(series), set(sops), set(accessions), set(patient_ids))
    for kind, uids in (("StudyInstanceUID", sel.studies), ("SeriesInstanceUID", sel.series),
                       ("SOPInstanceUID", sel.sops)):
        bad = sorted(u for u in uids if not is_valid_uid(u))
        if bad:
            raise UsageError(f"{kind} {bad[0]!r} is not a valid UID")
    if query:
        from pacs.analyst.query import run_query

        table = run_query(cfg, query)
        cols = [c for c in UID_COLUMNS if c in table.column_names]
        if not cols:
            raise UsageError(f"--query must return at least one of the columns {', '.join(UID_COLUMNS)}; it returned "
                             f"{', '.join(table.column_names) or 'no column'}")
        for c, target in zip(UID_COLUMNS, (sel.studies, sel.series, sel.sops), strict=True):
            if c in cols:
                target.update(v for v in table.column(c).to_pylist() if v)
    if sel.empty():
        raise UsageError("nothing selected: give --query, --study, --accession, --patient-id, --series or --sop "
                         "(a query that returns no rows selects nothing)")
    return sel


def select(cfg: Config, sel: Selection) -> pa.Table:
    """The instances of the selection and their copies, from the live catalogue (read-only)."""
    if not cfg.duckdb.exists():
        raise CatalogueMissingError(f"catalogue {cfg.duckdb} does not exist yet (run pacs_ingest first)")
    with db.opened(cfg.duckdb, read_only=True) as con:
        return select_with(con, sel)


def select_with(con: Any, sel: Selection) -> pa.Table:
    """:func:`select` on an open catalogue connection (read-only is enough).

    A selected study's image rows are read in the row groups of its ingest times only (table
    ``study_ingest``): the lookup costs the study, not the catalogue (``bench/random_access.py``).
    The rows found are checked against the studies' ``image_count``; a shortfall (a filter that
    missed rows) falls back to a scan of ``image``, so the lookup is never short of files.
    Selectors that name nothing catalogued are a :class:`UsageError` (the first few named).
    """
    q = sql.named_queries("export_lookup")

    def rows(name: str, **params: Any) -> list[tuple[Any, ...]]:
        return con.execute(q[name], sql.params_for(q[name], params)).fetchall()

    def table(name: str, **params: Any) -> pa.Table:
        return con.sql(q[name], params=sql.params_for(q[name], params)).to_arrow_table()

    studies = rows("studies", studies=sorted(sel.studies), accessions=sorted(sel.accessions),
                   patients=sorted(sel.patients)) if (sel.studies or sel.accessions or sel.patients) else []
    unknown = [("StudyInstanceUID", v) for v in sorted(sel.studies - {r[0] for r in studies})]
    unknown += [("AccessionNumber", v) for v in sorted(sel.accessions - {r[2] for r in studies})]
    if sel.patients:
        merged = {r[0] for r in rows("merged_patients", patients=sorted(sel.patients))}
        unknown += [("PatientID", v) for v in sorted(sel.patients - {r[1] for r in studies} - merged)]
    parts, patient_of = [], {r[0]: r[1] for r in studies}
    if studies:
        uids = sorted(patient_of)
        (lo, hi), = rows("ingest_range", studies=uids)
        found = table("study_images", studies=uids, lo=lo, hi=hi) if lo is not None else None
        if found is None or found.num_rows != sum(r[3] for r in studies):
            found = table("study_images_scan", studies=uids)
        parts.append(found)
    if sel.series or sel.sops:
        named = table("named_images", series=sorted(sel.series), sops=sorted(sel.sops))
        unknown += [("SeriesInstanceUID", v) for v in
                    sorted(sel.series - {r[0] for r in rows("known_series", series=sorted(sel.series))})]
        unknown += [("SOPInstanceUID", v) for v in sorted(sel.sops - set(named.column("sop_instance_uid").to_pylist()))]
        missing = sorted(set(named.column("study_instance_uid").to_pylist()) - set(patient_of))
        patient_of.update(dict(rows("patients_of", studies=missing)) if missing else {})
        parts.append(named)
    if unknown:
        kind, value = unknown[0]
        raise UsageError(f"{kind} {value!r} is not catalogued" + (f" (and {len(unknown) - 1} more)"
                                                                   if len(unknown) > 1 else ""))
    images = pa.concat_tables(parts).group_by("sop_instance_uid").aggregate([]) if len(parts) > 1 else None
    picked = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    if images is not None:  # a SOP instance selected twice (its study and its series) is exported once
        first = pc.index_in(images.column("sop_instance_uid"), value_set=picked.column("sop_instance_uid"))
        picked = picked.take(first)
    sops = picked.column("sop_instance_uid").to_pylist()
    rejected = {r[0] for r in rows("rejected", sops=sops)} if sops else set()
    if rejected:
        picked = picked.filter(pc.invert(pc.is_in(picked.column("sop_instance_uid"),
                                                  value_set=pa.array(sorted(rejected), pa.string()))))
    patients = pa.array([patient_of.get(u) for u in picked.column("study_instance_uid").to_pylist()], pa.string())
    picked = picked.add_column(3, "patient_id", patients)
    order = pc.sort_indices(picked, sort_keys=[(c, "ascending") for c in UID_COLUMNS])
    return picked.take(order)


def _patient_folder(patient_id: str | None) -> str:
    pid = patient_id or ""
    if _SAFE_NAME.fullmatch(pid) and pid not in (".", ".."):
        return pid
    return "patient-" + hashlib.sha256(pid.encode()).hexdigest()[:16]


def _copies(cfg: Config, r: dict[str, Any]) -> list[tuple[str, Location, str, int | None, int | None]]:
    out = []
    if r["online_uri"]:
        out.append(("online", cfg.online, r["online_uri"], None, None))
    if r["offline_uri"]:
        tier = "offline-packed" if r["offline_offset"] is not None else "offline"
        out.append((tier, cfg.offline, r["offline_uri"], r["offline_offset"], r["offline_length"]))
    return out


class _Spans:
    """The byte spans of the series tars a chunk reads members of: one ranged read per tar covers
    every member of it the chunk needs (instead of one request per member), kept for the chunk."""

    def __init__(self, cfg: Config, chunk: list[dict[str, Any]]) -> None:
        self.cfg, self.lock = cfg, threading.Lock()
        self.wanted: dict[str, tuple[int, int]] = {}
        for r in chunk:
            if r["online_uri"] is None and r["offline_offset"] is not None:
                lo, hi = self.wanted.get(r["offline_uri"], (r["offline_offset"], 0))
                self.wanted[r["offline_uri"]] = (min(lo, r["offline_offset"]),
                                                 max(hi, r["offline_offset"] + r["offline_length"]))
        self.held: dict[str, tuple[int, bytes]] = {}
        self.locks = {uri: threading.Lock() for uri in self.wanted}

    def read(self, uri: str, offset: int, length: int) -> bytes | memoryview:
        if uri not in self.wanted:
            return store.read(self.cfg.offline, uri, offset, length)
        with self.locks[uri]:
            if uri not in self.held:
                lo, hi = self.wanted[uri]
                self.held[uri] = (lo, store.read(self.cfg.offline, uri, lo, hi - lo))
        start, data = self.held[uri]
        return memoryview(data)[offset - start:offset - start + length]


def read_verified(cfg: Config, r: dict[str, Any], counts: dict[str, int], lock: threading.Lock,
                  spans: _Spans | None = None, buffer: bytearray | None = None) -> tuple[bytes | memoryview, str]:
    """One instance's bytes from its fastest copy whose sha256 matches the catalogue's.

    With ``buffer`` (one per thread, reused) a local copy is read into it: the bytes returned are
    then a view of it, valid until the buffer's next use."""
    problems = []
    for tier, loc, uri, offset, length in _copies(cfg, r):
        try:
            if spans is not None and tier == "offline-packed":
                data = spans.read(uri, offset, length)
            elif buffer is not None:
                data = store.read_into(loc, uri, buffer, offset, length)
            else:
                data = store.read(loc, uri, offset, length)
        except FileNotFoundError:
            problems.append(f"{tier} copy missing")
            continue
        if hashlib.sha256(data).hexdigest() == r["sha256"]:
            return data, tier
        problems.append(f"{tier} copy does not match its sha256")
        with lock:
            counts["corrupt_copies"] += 1
    raise CorruptCopyError(f"SOP instance {r['sop_instance_uid']}: no verified copy ({'; '.join(problems) or 'none'})")


class _Writer:
    """Writes instances of the selection to the target; returns each one's manifest row.

    Per file: one read of the copy (into the thread's buffer when it is local), one sha256 (of
    the bytes read, which are then written as they are; a de-identified file's new bytes are
    hashed once more for the manifest), one write under a temporary name published by rename,
    with no fsync: the chunk's files are flushed together before its manifest part says they are
    done (:func:`_publish_part`)."""

    def __init__(self, cfg: Config, target: Location, deid: Any, counts: dict[str, int]) -> None:
        self.cfg, self.target, self.deid, self.counts = cfg, target, deid, counts
        self.lock = threading.Lock()
        self.local = threading.local()

    def _buffer(self, size: int) -> bytearray:
        buf = getattr(self.local, "buffer", None)
        if buf is None or len(buf) <= size:  # one byte more than expected: a longer file shows as longer
            buf = self.local.buffer = bytearray(max(size + 1, 1 << 20))
        return buf

    def one(self, r: dict[str, Any], spans: _Spans | None = None) -> dict[str, Any]:
        data, tier = read_verified(self.cfg, r, self.counts, self.lock, spans, self._buffer(r["size_bytes"] or 0))
        uids = [r[c] for c in UID_COLUMNS]
        patient = _patient_folder(r["patient_id"])
        sha = r["sha256"]  # the bytes read are verified: these very bytes are written
        if self.deid is not None:
            uids = [self.deid.uid(u) for u in uids]
            patient = self.deid.patient_pseudonym(r["patient_id"] or "")
            try:  # the catalogue's (effective) PatientID: the pseudonym of the folder and of the views
                data = self.deid(bytes(data), patient_id=r["patient_id"] or "")
            except DeidentificationError as exc:
                with self.lock:
                    self.counts["refused"] += 1
                return {"patient": patient, "study_instance_uid": uids[0], "series_instance_uid": uids[1],
                        "sop_instance_uid": uids[2], "path": None, "sha256": None, "size_bytes": 0,
                        "source_tier": tier, "verified": True, "refused": exc.reason}
            sha = hashlib.sha256(data).hexdigest()
        study, series, sop = uids
        key = f"{patient}/{study}/{series}/{sop}.dcm"
        store.write(self.target, self.target.path(key), data, sha, fsync=False, overwrite=True)
        with self.lock:
            self.counts["files"] += 1
            self.counts["bytes"] += len(data)
            self.counts[f"from_{tier.replace('-', '_')}"] += 1
        return {"patient": patient, "study_instance_uid": study, "series_instance_uid": series,
                "sop_instance_uid": sop, "path": key, "sha256": sha, "size_bytes": len(data), "source_tier": tier,
                "verified": True, "refused": None}


def _manifest_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A manifest part: the exported files and those de-identification refused (``refused``: the
    reason code; no path, no sha256)."""
    return pa.table({c: pa.array([r.get(c) for r in rows], type=pa.int64() if c == "size_bytes" else
                                 pa.bool_() if c == "verified" else pa.string())
                     for c in (*MANIFEST_COLUMNS, "refused")})


def _write_parquet(loc: Location, key: str, table: pa.Table, *, fsync: bool = True) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    store.write(loc, loc.path(key), data, hashlib.sha256(data).hexdigest(), fsync=fsync, overwrite=True)


def _done_parts(target: Location, prefix: str) -> set[int]:
    names = store.names(target, target.path(prefix))
    return {int(m.group(1)) for n in names if (m := re.fullmatch(r"part-(\d{6})\.parquet", n))}


def _target(cfg: Config, target_url: str) -> Location:
    target = Location.at("export", target_url)
    for loc in cfg.all_roots():
        if target.overlaps(loc):
            raise UsageError(f"export target {target_url} is inside the archive's {loc.name} location "
                             f"({loc.url}); export to a folder or prefix of its own")
    return target


def _digest(sel: Selection, deidentify: bool) -> str:
    return f"{sel.digest()}-{'deid' if deidentify else 'orig'}"


def save_selection(cfg: Config, target_url: str, sel: Selection, *, deidentify: bool = False) -> dict[str, Any]:
    """Resolve the selection in the catalogue and keep it under the target's ``.pacs-export/``
    (the ``pacs_export`` DAG: this step runs where the catalogue is, the copy anywhere)."""
    target = _target(cfg, target_url)
    table = select(cfg, sel)
    digest = _digest(sel, deidentify)
    with store.tier_faults(target):
        _write_parquet(target, f"{STATE}/{digest}/selection.parquet", table)
    return {"digest": digest, "instances": table.num_rows,
            "studies": len(set(table.column("study_instance_uid").to_pylist()))}


def load_selection(target_url: str, digest: str) -> pa.Table:
    """The selection :func:`save_selection` kept."""
    target = Location.at("export", target_url)
    return pq.read_table(io.BytesIO(store.read(target, target.path(f"{STATE}/{digest}/selection.parquet"))))


def _workers(cfg: Config, target: Location, rows: list[dict[str, Any]]) -> int:
    """Threads for the copy: what suits the slowest place it reads or writes (local copies are
    bound by the CPU, object-store requests by their round trips)."""
    places = [target] + [cfg.online] * any(r["online_uri"] for r in rows)
    places += [cfg.offline] * any(r["online_uri"] is None for r in rows)
    return max(store.read_concurrency(loc) for loc in places)


def _publish_part(target: Location, prefix: str, n: int, rows: list[dict[str, Any]]) -> None:
    """Mark chunk ``n`` done: its files are flushed first (one ``syncfs`` of a local target for
    the whole chunk, in place of an fsync per file; an object store's puts are durable), then its
    manifest part is published (fsynced), so a part never lists a file a crash could lose."""
    store.sync([target])
    _write_parquet(target, f"{prefix}/part-{n:06d}.parquet", _manifest_table(rows))


def _copy_chunks(cfg: Config, target: Location, prefix: str, chunks: list[list[dict[str, Any]]],
                 writer: _Writer, pool: cf.ThreadPoolExecutor, pending: list[int]) -> Iterator[tuple[int, list[str]]]:
    """Copy the ``pending`` chunks, :data:`AHEAD` at a time, publishing each one's part in order
    once all its files are written; yields each chunk's number and its failures."""
    def submit(n: int) -> tuple[int, list[cf.Future[dict[str, Any]]]]:
        spans = _Spans(cfg, chunks[n])
        return n, [pool.submit(writer.one, r, spans) for r in chunks[n]]

    queue = iter(pending)
    window = deque(submit(n) for n in itertools.islice(queue, AHEAD))
    while window:
        n, futures = window.popleft()
        out, failures = [], []
        for fut in futures:
            try:
                out.append(fut.result())
            except CorruptCopyError as exc:
                failures.append(str(exc))
        following = next(queue, None)
        if following is not None:  # keep the workers busy while this chunk is flushed
            window.append(submit(following))
        if not failures:
            _publish_part(target, prefix, n, out)
        yield n, failures


def export(cfg: Config, target_url: str, sel: Selection | None, *, deidentify: bool = False,
           key: bytes | None = None, workers: int | None = None, run_id: str = "manual",
           saved: str | None = None) -> dict[str, Any]:
    """Export the selection to ``target_url``; resumable (see the module text). Returns counts,
    with ``status`` ``complete``, or ``partial`` when de-identification refused files (they are
    left out, counted in ``refused`` and listed in ``refused.csv``; the rest is exported).

    ``saved``: the digest of a selection :func:`save_selection` kept (then ``sel`` is not needed
    and the catalogue is not opened). ``workers``: parallel copies (default: what the tiers read
    and the target suit, :func:`pacs.store.read_concurrency`)."""
    target = _target(cfg, target_url)
    deid = None
    if deidentify:
        from pacs.analyst.deid import pseudonym_key, require_key
        from pacs.export.deidentify import Deidentifier

        deid = Deidentifier(require_key(key if key is not None else pseudonym_key()))
    started = time.monotonic()
    if saved is not None:
        digest, rows = saved, load_selection(target_url, saved).to_pylist()
    elif sel is not None:
        digest, rows = _digest(sel, deidentify), select(cfg, sel).to_pylist()
    else:
        raise UsageError("nothing selected")
    prefix = f"{STATE}/{digest}"
    done = _done_parts(target, prefix)
    chunks = [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)]
    counts: dict[str, int] = {"files": 0, "bytes": 0, "corrupt_copies": 0, "from_online": 0, "from_offline": 0,
                              "from_offline_packed": 0, "refused": 0}
    writer = _Writer(cfg, target, deid, counts)
    failures: list[str] = []
    pending = [n for n in range(len(chunks)) if n not in done]
    skipped = len(rows) - sum(len(chunks[n]) for n in pending)
    workers = workers or _workers(cfg, target, [r for n in pending for r in chunks[n]])
    last = 0.0
    log.info("export: %d instance(s) in %d chunk(s) to %s with %d thread(s); %d already exported", len(rows),
             len(chunks), target_url, workers, skipped)
    with store.tier_faults(target), cf.ThreadPoolExecutor(max_workers=workers) as pool:
        for n, chunk_failures in _copy_chunks(cfg, target, prefix, chunks, writer, pool, pending):
            failures += chunk_failures
            now = time.monotonic()
            if now - last >= 5 or n == pending[-1]:
                last = now
                exported = skipped + counts["files"] + counts["refused"]
                rate = counts["files"] / max(now - started, 1e-9)
                log.info("export: %d of %d files (%.0f%%), %.0f files/s", exported, len(rows),
                         100 * exported / max(len(rows), 1), rate)
    if failures:
        raise CorruptCopyError(f"{len(failures)} instance(s) not exported (the others are; re-run after repairing "
                               f"them with pacs fixity): {failures[0]}")
    manifest, refused = _finish(target, prefix, len(chunks))
    seconds = time.monotonic() - started
    if refused:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(refused.items()))
        log.warning("export: %d instance(s) refused by de-identification and left out (%s); the rest is exported; "
                    "listed in %s", sum(refused.values()), reasons, target.uri(target.path("refused.csv")))
    return {"target": target_url, "instances": len(rows), "studies": len({r["study_instance_uid"] for r in rows}),
            "status": "partial" if refused else "complete", **counts, "refused": sum(refused.values()),
            "refused_reasons": refused, "resumed_files": skipped, "manifest": target.uri(target.path(manifest)),
            "refused_list": target.uri(target.path("refused.csv")), "deidentified": deidentify,
            "seconds": round(seconds, 2), "workers": workers,
            "files_per_second": round(counts["files"] / seconds, 1) if counts["files"] else None,
            "run_id": run_id, "finished_at": dt.datetime.now(dt.UTC).isoformat()}


def _csv_bytes(table: pa.Table) -> bytes:
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(table.column_names)
    for row in table.to_pylist():
        w.writerow([row[c] for c in table.column_names])
    return text.getvalue().encode()


def _finish(target: Location, prefix: str, n_chunks: int) -> tuple[str, dict[str, int]]:
    """The whole manifest from the parts (Parquet and CSV beside it) and ``refused.csv`` (the
    instances de-identification refused: new UIDs, pseudonym and reason code only); returns the
    manifest's key and the refusals by reason."""
    tables = []
    for n in range(n_chunks):
        data = store.read(target, target.path(f"{prefix}/part-{n:06d}.parquet"))
        part = pq.read_table(io.BytesIO(data))
        if "refused" not in part.column_names:  # a part written before refusals were listed
            part = part.append_column("refused", pa.nulls(part.num_rows, pa.string()))
        tables.append(part)
    everything = pa.concat_tables(tables) if tables else _manifest_table([])
    refused_mask = pc.is_valid(everything.column("refused"))
    table = everything.filter(pc.invert(refused_mask)).select(list(MANIFEST_COLUMNS))
    refused = everything.filter(refused_mask).rename_columns(
        [c if c != "refused" else "reason" for c in everything.column_names]).select(list(REFUSED_COLUMNS))
    _write_parquet(target, f"{prefix}/manifest.parquet", table, fsync=False)
    for name, body in (("manifest.csv", _csv_bytes(table)), ("refused.csv", _csv_bytes(refused))):
        store.write(target, target.path(name), body, hashlib.sha256(body).hexdigest(), fsync=False, overwrite=True)
    _write_parquet(target, "manifest.parquet", table, fsync=False)
    store.sync([target])  # one flush for the four files (a crash before it: the re-run writes them again)
    reasons: dict[str, int] = {}
    for reason in refused.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    return "manifest.parquet", reasons
