"""The store's one interface behaves the same on a local folder and on object storage (moto's
S3 server over HTTP): publish without replacing, atomic replace, streamed writes that publish
only on success, reads by path or catalogue URI, ranged reads, listing, removal and leases."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest
from helpers import s3fs_for

from pacs import store
from pacs.errors import TierError
from pacs.store import Location


@pytest.fixture(params=["local", "s3"])
def loc(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "local":
        return Location.at("online", str(tmp_path / "tier"))
    server = request.getfixturevalue("s3")
    s3fs_for(server).mkdir("pacs-store-test")
    return Location.at("offline", "s3://pacs-store-test/tier")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_write_publishes_once_and_never_replaces(loc: Location) -> None:
    path = loc.path("2024/1.2.3/1.2.3.4/1.2.3.4.5.dcm")
    assert store.write(loc, path, b"first", _sha(b"first"), fsync=True) is True
    assert store.write(loc, path, b"other", _sha(b"other"), fsync=True) is False  # left untouched
    assert store.read(loc, path) == b"first"
    assert store.holds(loc, path, _sha(b"first")) and not store.holds(loc, path, _sha(b"other"))
    assert store.write(loc, path, b"other", _sha(b"other"), fsync=True, overwrite=True) is True
    assert store.read(loc, path) == b"other"


def test_a_catalogue_uri_is_taken_wherever_a_path_is(loc: Location) -> None:
    path = loc.path("a/b.dcm")
    store.put(loc, path, b"0123456789")
    uri = loc.uri(path)
    assert store.exists(loc, uri) and store.read(loc, uri, 2, 3) == b"234"
    assert store.hash_at(loc, uri) == _sha(b"0123456789")
    assert store.remove(loc, uri) is True and not store.exists(loc, path)
    assert store.remove(loc, uri) is False


def test_put_replaces_atomically_and_names_lists_a_folder(loc: Location) -> None:
    for name in ("b.json", "a.json"):
        store.put(loc, loc.path(f"journal/run/{name}"), b"{}")
    store.put(loc, loc.path("journal/run/a.json"), b'{"v": 2}')
    assert store.read(loc, loc.path("journal/run/a.json")) == b'{"v": 2}'
    assert store.names(loc, loc.path("journal/run")) == ["a.json", "b.json"]
    assert store.names(loc, loc.path("journal/none")) == []
    assert sorted(loc.key(p) for p, _ in store.iter_files(loc)) == ["journal/run/a.json", "journal/run/b.json"]
    store.remove_tree(loc, loc.path("journal"))
    assert list(store.iter_files(loc)) == []


def test_a_streamed_file_is_published_only_when_its_writer_succeeds(loc: Location) -> None:
    path = loc.path("snapshot/image/data.parquet")
    store.put(loc, path, b"old partition")
    with pytest.raises(RuntimeError), store.writer(loc, path) as f:
        f.write(b"half of the new")
        raise RuntimeError("killed while writing")
    assert store.read(loc, path) == b"old partition"  # the reader still sees the old file whole
    assert [loc.key(p) for p, _ in store.iter_files(loc)] == ["snapshot/image/data.parquet"]
    with store.writer(loc, path) as f:
        f.write(b"new partition")
    assert store.read(loc, path) == b"new partition"


def test_copy_stream_hashes_what_it_writes(loc: Location, tmp_path: Path) -> None:
    src = tmp_path / "landing.dcm"
    src.write_bytes(b"x" * 100_000)
    written = store.copy_stream(Location.at("landing", str(tmp_path)).fs, str(src), loc, loc.path("c/x.dcm"),
                                fsync=True)
    assert written.created and written.size == 100_000 and written.sha256 == _sha(src.read_bytes())
    again = store.copy_stream(Location.at("landing", str(tmp_path)).fs, str(src), loc, loc.path("c/x.dcm"),
                              fsync=True)
    assert not again.created  # an existing file is never replaced


def test_a_lease_is_exclusive_and_released(loc: Location) -> None:
    path = loc.path("locks/sweep/lease")
    first = store.lock(loc, path, "run-1", ttl=30.0)
    second = store.lock(loc, path, "run-2", ttl=30.0)
    assert first.acquire() is True
    try:
        assert second.acquire() is False and second.held_elsewhere() is True
    finally:
        first.release()
    assert second.acquire() is True
    second.release()


def test_a_tier_fault_is_one_line_naming_the_tier(tmp_path: Path) -> None:
    loc = Location.at("online", str(tmp_path / "missing-mount"))
    with pytest.raises(TierError) as caught, store.tier_faults(loc):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "missing-mount" / "x"))
    assert str(caught.value).startswith(f"the online tier at {tmp_path / 'missing-mount'} is missing")
    assert caught.value.terminal


@pytest.fixture
def full_tier(tmp_path: Path):
    """A local tier on a 16 KB tmpfs (needs root to mount)."""
    import subprocess

    root = tmp_path / "small"
    root.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(root)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield Location.at("online", str(root / "tier"))
    finally:
        subprocess.run(["umount", str(root)], capture_output=True)


def test_a_full_local_tier_fails_the_write_and_publishes_nothing(full_tier: Location, tmp_path: Path) -> None:
    """A write that fills the filesystem is a short write first and ENOSPC only on the next one:
    neither ``write`` nor ``copy_stream`` may publish the bytes that fitted."""
    data = bytes(range(256)) * 256  # 64 KB: four times the filesystem
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    with pytest.raises(TierError, match="is full") as caught, store.tier_faults(full_tier):
        store.write(full_tier, full_tier.path("a/one.bin"), data, _sha(data), fsync=True)
    assert caught.value.terminal
    with pytest.raises(TierError, match="is full"), store.tier_faults(full_tier):
        store.copy_stream(full_tier.fs, str(source), full_tier, full_tier.path("a/two.bin"), fsync=True)
    assert [p for p in Path(full_tier.root).rglob("*") if p.is_file()] == []


def test_root_exists_tells_a_missing_folder_or_bucket(tmp_path: Path, s3) -> None:
    s3fs_for(s3).mkdir("pacs-root-there")
    assert store.root_exists(Location.at("landing[0]", str(tmp_path)))
    assert not store.root_exists(Location.at("landing[0]", str(tmp_path / "not-made")))
    assert store.root_exists(Location.at("landing[0]", "s3://pacs-root-there/nothing-yet"))  # no folders in S3
    assert not store.root_exists(Location.at("landing[0]", "s3://pacs-root-not-there/landing"))
