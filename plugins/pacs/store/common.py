"""What both storage backends share: chunk size, the temporary-name mark, hashing, :class:`Written`."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from fsspec import AbstractFileSystem

CHUNK = 4 * 1024 * 1024


TMP_MARK = ".pacs-tmp-"


@dataclass(frozen=True, slots=True)
class Written:
    """Outcome of a publish: the final path, its digest and size, and whether we created it."""

    path: str
    sha256: str
    size: int
    created: bool


def sha256_b64(hex_digest: str) -> str:
    """The base64 form S3 uses for ``ChecksumSHA256``."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def hash_bytes(data: bytes | memoryview) -> str:
    """sha256 (hex) of bytes in memory."""
    return hashlib.sha256(data).hexdigest()


def hash_path(fs: AbstractFileSystem, path: str) -> tuple[str, int]:
    """sha256 and size of a file, streamed in chunks."""
    h = hashlib.sha256()
    size = 0
    with fs.open(path, "rb", block_size=CHUNK) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
