"""A location: a root in one of the archive's places (a local folder or an object-store prefix).

A :class:`Location` knows its fsspec filesystem and converts between the three names of a
stored file: its *key* (a relative posix path under the root, what the layout builds), its
*path* (what the filesystem takes) and its *URI* (what the catalogue records). It is the one
place that tells a local folder from object storage (:attr:`Location.is_local`); the backends
in :mod:`pacs.store` branch on it, nothing else does.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fsspec import AbstractFileSystem, filesystem
from fsspec.utils import infer_storage_options

from pacs.errors import UnsafePathError


@dataclass(frozen=True)
class Location:
    """A root in one of the archive's places: a local folder or an object-store prefix.

    ``root`` is the filesystem-native path (no protocol) that every key is joined to; nothing
    is ever read or written outside it.
    """

    name: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    conn_id: str | None = None

    @classmethod
    def at(cls, name: str, url: str, *, base: str | os.PathLike[str] | None = None,
           storage_options: dict[str, Any] | None = None, conn_id: str | None = None) -> Location:
        """The location ``url`` names; a relative local path resolves against ``base`` (default:
        the working directory) and ``file://`` is dropped, so every local location is absolute."""
        loc = cls(name=name, url=url, storage_options=dict(storage_options or {}), conn_id=conn_id)
        if not loc.is_local:
            return loc
        path = infer_storage_options(url)["path"]
        if not os.path.isabs(path):
            path = os.path.realpath(os.path.join(base or os.getcwd(), path))
        return cls(name=name, url=path, storage_options=loc.storage_options, conn_id=conn_id)

    @property
    def protocol(self) -> str:
        proto = infer_storage_options(self.url).get("protocol", "file")
        return "file" if proto in ("file", "local") else proto

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def root(self) -> str:
        if self.is_local:
            return os.path.abspath(infer_storage_options(self.url)["path"])
        path = infer_storage_options(self.url)["path"]
        host = infer_storage_options(self.url).get("host", "")
        full = f"{host}{path}" if host and not path.startswith(host) else path
        return full.strip("/")

    @cached_property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem for this location (credentials from conn_id or environment)."""
        if self.conn_id and self.protocol == "s3":
            from airflow.providers.amazon.aws.fs.s3 import get_fs

            return get_fs(self.conn_id, self.storage_options or None)
        if self.conn_id:
            from airflow.sdk import ObjectStoragePath

            return ObjectStoragePath(self.url, conn_id=self.conn_id).fs
        return filesystem(self.protocol, **self.storage_options)

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (a relative posix key) under this root."""
        clean = posixpath.normpath(key)
        if clean.startswith(("/", "..")) or clean == ".":
            raise UnsafePathError(f"key {key!r} escapes the {self.name} root")
        if self.is_local:
            return os.path.join(self.root, *clean.split("/"))
        return f"{self.root}/{clean}"

    def key(self, path: str) -> str:
        """The relative key of a filesystem path under this root."""
        root = self.root.rstrip("/")
        if not (path == root or path.startswith(root + "/")):
            raise UnsafePathError(f"{path!r} is outside the {self.name} root")
        return path[len(root) + 1 :]

    def contains(self, path: str) -> bool:
        """Whether ``path`` lies strictly under this root."""
        return self.is_within(path, self.root)

    def is_within(self, path: str, folder: str) -> bool:
        """Whether ``path`` lies strictly under ``folder`` (a path of this location)."""
        sep = os.sep if self.is_local else "/"
        if self.is_local:
            path = os.path.abspath(path)
        return path.startswith(folder.rstrip(sep) + sep)

    def overlaps(self, other: Location) -> bool:
        """Whether one root lies inside the other (then a move between them is not safe)."""
        if self.protocol != other.protocol:
            return False
        ra, rb = self.root.rstrip("/"), other.root.rstrip("/")
        return ra == rb or self.contains(rb) or other.contains(ra)

    def uri(self, path: str) -> str:
        """The URI recorded in the catalogue for a filesystem path of this location."""
        if self.is_local:
            return path
        return f"{self.protocol}://{path}"

    def path_of_uri(self, uri: str) -> str:
        """Inverse of :meth:`uri`."""
        if self.is_local:
            return uri[len("file://") :] if uri.startswith("file://") else uri
        prefix = f"{self.protocol}://"
        return uri[len(prefix) :] if uri.startswith(prefix) else uri
