"""The merge's SOP-instance lookup at the cost of the batch: a sorted copy of ``image_sop`` beside
the catalogue.

``image_sop`` (include/sql/schema.sql) holds one 16-byte row per image: the low 64 bits of the
md5 of its SOP Instance UID and its ``ingested_at``. Scanning it costs what the catalogue holds
(0.3–0.7 s at 30 million images, the only step of a merge that grew with the archive). This
index holds the same rows sorted by hash in files next to the DuckDB file, so a merge finds the
few staged SOP instances that may be catalogued by reading about one 4 KB page per instance:

``<catalogue>.sop-index/``
  - ``meta.json`` — which files make the index, and the catalogue **token** it matches (written
    last, by rename);
  - ``base-<id>.hash.npy`` / ``base-<id>.at.npy`` — every row, sorted by hash (memory-mapped,
    never loaded whole), and ``base-<id>.fence.npy``, every ``BLOCK``-th hash (in memory);
  - ``delta-<id>.npy`` — the rows each merge added since (small; loaded whole), until they are
    more than ``DELTA_SHARE`` of the base or ``MAX_DELTAS`` files: then the base is rebuilt.

**Trusted only when exact.** Every merge transaction that inserts ``image_sop`` rows also writes
a new random ``image_sop_token`` into ``catalogue_meta`` (merge_apply.sql), and a rebuild of
``image_sop`` deletes it (schema.sql). The index is used only when its ``meta.json`` names the
token the catalogue holds now, i.e. it was written after the very commit that made the current
``image_sop``. Anything else — no index yet, a crash between COMMIT and the index update, a
catalogue restored from a backup, a copied or edited catalogue, an unreadable file — rebuilds it
from ``image_sop`` (one ordered scan, DuckDB sorting under its memory limit, the rows streamed
to disk), and if even that fails the merge scans ``image_sop`` as before. The index is a filter,
never the truth: a hit is then looked up in ``image`` (merge_decide.sql), so a stale row costs a
lookup; only a missing row could let a duplicate in, which the token rules out.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pacs import store
from pacs.store import Location

log = logging.getLogger(__name__)

FORMAT = 1
BLOCK = 512            # hashes per fence entry: one 4 KB page of the base
DELTA_SHARE = 0.05     # rebuild the base when the deltas hold more rows than this share of it ...
DELTA_MIN_ROWS = 200_000  # ... and more than this many
MAX_DELTAS = 64        # ... or when there are more delta files than this
TOKEN_KEY = "image_sop_token"  # noqa: S105 - a catalogue_meta key, not a secret
META = "meta.json"
_STREAM_ROWS = 1_000_000

HITS_SCHEMA = pa.schema([("sop_hash", pa.uint64()), ("ingested_at", pa.timestamp("us", tz="UTC"))])


def index_dir(catalogue_path: str | os.PathLike[str]) -> Path:
    """Where the index of the DuckDB file ``catalogue_path`` lives."""
    return Path(str(catalogue_path) + ".sop-index")


def catalogue_token(con: Any) -> str | None:
    rows = con.execute("SELECT value FROM catalogue_meta WHERE key = $k", {"k": TOKEN_KEY}).fetchall()
    return rows[0][0] if rows else None


def new_token() -> str:
    return uuid.uuid4().hex


class SopIndex:
    """An opened index: the base (memory-mapped), its fence and the deltas (in memory)."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        base = meta["base"]
        self.base_rows = int(meta["base_rows"])
        if self.base_rows:
            self.base_hash = np.load(root / f"base-{base}.hash.npy", mmap_mode="r")
            self.base_at = np.load(root / f"base-{base}.at.npy", mmap_mode="r")
            self.fence = np.load(root / f"base-{base}.fence.npy")
        else:
            self.base_hash = self.base_at = self.fence = np.empty(0, dtype=np.uint64)
        if (len(self.base_hash) != self.base_rows or len(self.base_at) != self.base_rows
                or len(self.fence) != -(-self.base_rows // BLOCK)):
            raise ValueError("index files do not match their manifest")
        deltas = [np.load(root / f"delta-{d}.npy") for d in meta["deltas"]]
        both = np.concatenate(deltas) if deltas else np.empty((0, 2), dtype=np.uint64)
        order = np.argsort(both[:, 0], kind="stable")
        self.delta_hash = np.ascontiguousarray(both[order, 0])
        self.delta_at = np.ascontiguousarray(both[order, 1])

    @property
    def token(self) -> str:
        return str(self.meta["token"])

    @property
    def rows(self) -> int:
        return self.base_rows + len(self.delta_hash)

    def lookup(self, hashes: np.ndarray) -> pa.Table:
        """Every indexed row whose hash is one of ``hashes``: (sop_hash, ingested_at)."""
        keys = np.unique(np.asarray(hashes, dtype=np.uint64))
        found_h: list[np.ndarray] = []
        found_a: list[np.ndarray] = []
        if len(keys) and self.base_rows:
            first = np.clip(np.searchsorted(self.fence, keys, "left") - 1, 0, None)
            last = np.clip(np.searchsorted(self.fence, keys, "right") - 1, 0, None)
            for key, b0, b1 in zip(keys.tolist(), first.tolist(), last.tolist(), strict=True):
                start, end = b0 * BLOCK, min((b1 + 1) * BLOCK, self.base_rows)
                seg = self.base_hash[start:end]
                i, j = int(seg.searchsorted(key, "left")), int(seg.searchsorted(key, "right"))
                if j > i:
                    found_h.append(np.asarray(seg[i:j]))
                    found_a.append(np.asarray(self.base_at[start + i:start + j]))
        if len(keys) and len(self.delta_hash):
            lo = np.searchsorted(self.delta_hash, keys, "left")
            hi = np.searchsorted(self.delta_hash, keys, "right")
            for i, j in zip(lo[hi > lo].tolist(), hi[hi > lo].tolist(), strict=True):
                found_h.append(self.delta_hash[i:j])
                found_a.append(self.delta_at[i:j])
        h = np.concatenate(found_h) if found_h else np.empty(0, dtype=np.uint64)
        a = np.concatenate(found_a) if found_a else np.empty(0, dtype=np.uint64)
        return pa.table([pa.array(h, pa.uint64()), pa.array(a.astype(np.int64), pa.int64()).cast(
            pa.timestamp("us", tz="UTC"))], schema=HITS_SCHEMA)

    def missing(self, hashes: np.ndarray) -> int:
        """How many of ``hashes`` the index does not hold (``pacs check``; vectorised, any size)."""
        keys = np.asarray(hashes, dtype=np.uint64)
        held = np.zeros(len(keys), dtype=bool)
        for sorted_hashes in (self.base_hash, self.delta_hash):
            if len(sorted_hashes):
                pos = np.searchsorted(sorted_hashes, keys)
                held |= np.asarray(sorted_hashes[np.minimum(pos, len(sorted_hashes) - 1)]) == keys
        return int((~held).sum())

    def wants_rebuild(self) -> bool:
        deltas = len(self.delta_hash)
        return (len(self.meta["deltas"]) >= MAX_DELTAS
                or deltas > max(DELTA_MIN_ROWS, int(self.base_rows * DELTA_SHARE)))

    def added(self, con: Any, hashes: np.ndarray, ingested_at_us: int, token: str) -> SopIndex:
        """Record the rows a committed merge added (its transaction wrote ``token``); returns
        the index to use next (rebuilt when the deltas grew too large)."""
        hashes = np.sort(np.asarray(hashes, dtype=np.uint64))
        meta = dict(self.meta)
        if len(hashes):
            name = uuid.uuid4().hex[:16]
            rows = np.empty((len(hashes), 2), dtype=np.uint64)
            rows[:, 0] = hashes
            rows[:, 1] = np.uint64(ingested_at_us)
            _save(self.root / f"delta-{name}.npy", rows)
            meta["deltas"] = [*meta["deltas"], name]
        meta["token"] = token
        _write_meta(self.root, meta)
        index = SopIndex(self.root, meta)
        if index.wants_rebuild():
            return rebuild(con, self.root, token=token)
        return index


def _location(root: Path) -> Location:
    return Location.at("sop_index", str(root))


def _save(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    store.put(_location(path.parent), str(path), buf.getvalue(), fsync=True)


def _write_meta(root: Path, meta: dict[str, Any]) -> None:
    store.put(_location(root), str(root / META), json.dumps(meta).encode(), fsync=True)


def _remove_unlisted(root: Path, meta: dict[str, Any]) -> None:
    keep = {META, *(f"base-{meta['base']}.{p}.npy" for p in ("hash", "at", "fence")),
            *(f"delta-{d}.npy" for d in meta["deltas"])}
    loc = _location(root)
    for name in store.names(loc, str(root)):
        if name not in keep:
            store.remove(loc, str(root / name))


def rebuild(con: Any, root: Path, *, token: str | None = None) -> SopIndex:
    """The index of ``image_sop`` as it is now, from one ordered scan (the catalogue writer's
    connection, outside a transaction). Makes a token when the catalogue has none."""
    token = token or catalogue_token(con)
    if token is None:
        token = new_token()
        con.execute("INSERT INTO catalogue_meta VALUES ($k, $v) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    {"k": TOKEN_KEY, "v": token})
    root.mkdir(parents=True, exist_ok=True)
    n = int(con.execute("SELECT count(*) FROM image_sop").fetchall()[0][0])
    base = uuid.uuid4().hex[:16]
    fence: list[np.ndarray] = []
    done = 0
    loc = _location(root)
    header = {"descr": "<u8", "fortran_order": False, "shape": (n,)}
    with (store.writer(loc, str(root / f"base-{base}.hash.npy")) as fh,
          store.writer(loc, str(root / f"base-{base}.at.npy")) as fa):
        for f in (fh, fa):
            np.lib.format.write_array_header_1_0(f, header)
        reader = con.sql("SELECT sop_hash, epoch_us(ingested_at)::UBIGINT AS at FROM image_sop "
                         "ORDER BY sop_hash").to_arrow_reader(_STREAM_ROWS)
        for batch in reader:
            h = batch.column(0).to_numpy(zero_copy_only=False).astype("<u8", copy=False)
            a = batch.column(1).to_numpy(zero_copy_only=False).astype("<u8", copy=False)
            first = (-done) % BLOCK  # the batch's first position that starts a block
            fence.append(h[first::BLOCK].copy())
            fh.write(h.tobytes())
            fa.write(a.tobytes())
            done += len(h)
        for f in (fh, fa):  # durable before the manifest names them
            f.flush()
            os.fsync(f.fileno())
    if done != n:
        raise RuntimeError(f"image_sop changed while it was indexed ({n} rows counted, {done} read)")
    _save(root / f"base-{base}.fence.npy", np.concatenate(fence) if fence else np.empty(0, dtype=np.uint64))
    meta = {"format": FORMAT, "token": token, "base": base, "base_rows": n, "block": BLOCK, "deltas": []}
    _write_meta(root, meta)
    _remove_unlisted(root, meta)
    log.info("SOP-instance index rebuilt from image_sop: %d rows", n)
    return SopIndex(root, meta)


def open_index(con: Any, catalogue_path: str | os.PathLike[str]) -> SopIndex | None:
    """The index of the catalogue, checked against its token (rebuilt when it does not match);
    None when it cannot be had (then the merge scans ``image_sop``)."""
    root = index_dir(catalogue_path)
    token = catalogue_token(con)
    try:
        meta = json.loads((root / META).read_text())
        if meta.get("format") == FORMAT and meta.get("block") == BLOCK and token and meta.get("token") == token:
            index = SopIndex(root, meta)
            return rebuild(con, root, token=token) if index.wants_rebuild() else index
        why = "it does not match the catalogue's last change"
    except FileNotFoundError:
        why = "there is none yet"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"it cannot be read ({exc})"
    log.info("SOP-instance index %s: rebuilding it (%s)", root, why)
    try:
        return rebuild(con, root)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("SOP-instance index %s could not be rebuilt (%s); the merge scans image_sop", root, exc)
        return None
