"""The journal on object storage (issue 11): steps, resumption, open runs and leases on moto's S3
server, with the other runs played by real processes (killed with SIGKILL, paused with SIGSTOP).

What a reader must be able to count on when ``work`` is ``s3://``: a step is whole or absent;
what another process wrote is seen (no stale listing); a lease is held by one process at a time,
is released on release, outlives its TTL only while its holder renews it, and is never removed
by a holder that lost it; and a store that would make a lease exclude nobody is refused.

moto 5.2 refuses a conditional put whose condition fails (412, as AWS S3 does) but checks the
condition and stores the object in two steps of a threaded server, so its atomicity under truly
simultaneous writers is likely rather than guaranteed; the tests prove the leases' logic against
it, and the leases rest on the production store (AWS S3, MinIO) applying each condition atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import MotoServer, s3fs_for
from helpers import query as _q
from processes import Child, wait_until

from pacs import intake, journal, store, synth
from pacs.errors import LeaseUnsupportedError
from pacs.intake import landing
from pacs.store import Location

BUCKET = "journal-s3"


@pytest.fixture
def work(s3: MotoServer) -> Location:
    s3fs_for(s3).mkdir(BUCKET)
    return Location.at("work", f"s3://{BUCKET}/work")


def _lease_body(s3: MotoServer, work: Location, run: str) -> dict[str, Any]:
    return json.loads(s3fs_for(s3).cat_file(work.path(f"ingest/{run}/{journal.LEASE}")))


def _lease_etag(s3: MotoServer, work: Location, run: str) -> str | None:
    try:
        return s3fs_for(s3).info(work.path(f"ingest/{run}/{journal.LEASE}"), refresh=True)["ETag"]
    except FileNotFoundError:
        return None


# A process that holds one run's lease (with the TTL it is given) until told to release it.
_HOLDER = """
    import sys
    from pacs import journal
    from pacs.store import Location
    journal.LEASE_TTL_SECONDS = float(sys.argv[3])
    cm = journal.ingest(Location.at("work", sys.argv[1])).lease(sys.argv[2])
    print("held" if cm.__enter__() else "not held", flush=True)
    if sys.stdin.readline().strip() == "release":
        cm.__exit__(None, None, None)
        print("released", flush=True)
"""


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------

_REWRITER = """
    import sys
    from pacs import journal
    from pacs.store import Location
    j = journal.ingest(Location.at("work", sys.argv[1]))
    size = int(sys.argv[2])
    print("writing", flush=True)
    i = 0
    while True:  # until killed
        j.write_json("b-0001", journal.MANIFEST, {"version": "ab"[i % 2], "files": ["ab"[i % 2] * size]})
        i += 1
"""


def test_a_step_is_read_whole_while_another_process_rewrites_it_and_after_it_is_killed(
        work: Location, tmp_path: Path) -> None:
    size = 1_000_000
    versions = {v: {"version": v, "files": [v * size]} for v in "ab"}
    writer = Child(_REWRITER, work.url, str(size), log=tmp_path / "writer.log")
    try:
        assert writer.line() == "writing"
        j = journal.ingest(work)
        wait_until(lambda: j.has("b-0001", journal.MANIFEST), "the first write")
        seen: list[str] = []

        def read_whole() -> bool:
            step = j.read_json("b-0001", journal.MANIFEST)
            assert step in versions.values(), "a reader saw a step that is neither the old nor the new one"
            seen.append(step["version"])
            return len(seen) >= 20 and len(set(seen)) == 2  # the step was rewritten while being read

        wait_until(read_whole, "reads of both versions", every=0.0)
    finally:
        writer.kill()  # at any point of a write
    assert j.read_json("b-0001", journal.MANIFEST) in versions.values()


_RESUMABLE = """
    import sys, time
    from pacs import intake, journal
    from pacs.config import load_config
    journal.LEASE_TTL_SECONDS = 2.0
    cfg = load_config(sys.argv[1])
    (batch,) = intake.sweep(cfg, run_id="killed")
    intake.process_batch(cfg, batch)
    assert journal.ingest(cfg.work).lease(batch).__enter__()  # then killed, say during its merge
    print(batch, flush=True)
    time.sleep(600)
"""


def test_a_run_killed_after_a_step_resumes_from_that_step_once_its_lease_has_expired(
        s3: MotoServer, archive: Any, tmp_path: Path) -> None:
    fs = s3fs_for(s3)
    fs.mkdir("landing-resume")
    fs.mkdir("work-resume")
    src = synth.generate_ct_slices(tmp_path / "ct", 6, per_series=3, rows=16, columns=16)
    for f in src.good():
        fs.put_file(f.path, f"landing-resume/in/{Path(f.path).name}")
    cfg = archive(landing=["s3://landing-resume/in"], work="s3://work-resume/journal",
                  ingest={"batch_size": 50, "workers": 1, "fsync": False})
    child = Child(_RESUMABLE, str(cfg.path), log=tmp_path / "killed.log")
    try:
        batch = child.line()
    finally:
        child.kill()
    j = journal.ingest(cfg.work)
    stored = fs.info(cfg.work.path(j.key(batch, journal.STORED)), refresh=True)["ETag"]
    assert not j.has(batch, journal.MERGED)
    wait_until(lambda: not j.is_leased(batch), "the killed run's lease to expire")
    summary = intake.run_ingest(cfg, run_id="next")
    assert summary["catalogued"] == 6 and summary["files"] == 6
    # resumed from its last written step: the batch's files were not processed again
    assert fs.info(cfg.work.path(j.key(batch, journal.STORED)), refresh=True)["ETag"] == stored
    assert j.has(batch, journal.MERGED) and j.has(batch, journal.DONE) and j.open_runs() == []
    expected = {f.sop_instance_uid: hashlib.sha256(Path(f.path).read_bytes()).hexdigest() for f in src.good()}
    assert dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image")) == expected
    assert fs.find("landing-resume/in") == []


# --------------------------------------------------------------------------------------------
# open runs
# --------------------------------------------------------------------------------------------

_OTHER_RUN = """
    import sys
    from pacs import journal
    from pacs.store import Location
    j = journal.ingest(Location.at("work", sys.argv[1]))
    j.write_json("b-0002", journal.MANIFEST, {"files": [{"uri": "s3://landing/in/2.dcm"}]})
    j.mark("b-0001", journal.DONE)
"""


def test_open_batches_are_those_on_the_store_not_those_this_process_listed_before(
        work: Location, tmp_path: Path) -> None:
    j = journal.ingest(work)
    j.write_json("b-0001", journal.MANIFEST, {"files": [{"uri": "s3://landing/in/1.dcm"}]})
    assert j.open_runs() == ["b-0001"] and j.names("b-0001") == ["manifest.json"]
    assert Child(_OTHER_RUN, work.url, log=tmp_path / "other.log").wait() == 0
    assert j.runs() == ["b-0001", "b-0002"]  # a batch another process opened since this one listed
    assert j.has("b-0001", journal.DONE)  # and a step it wrote into a run folder listed here
    assert j.open_runs() == ["b-0002"]
    assert j.claimed_sources(j.open_runs()) == {"s3://landing/in/2.dcm"}


# --------------------------------------------------------------------------------------------
# leases
# --------------------------------------------------------------------------------------------

_CONTENDER = """
    import json, sys
    from pacs import journal
    from pacs.store import Location
    j = journal.ingest(Location.at("work", sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()
    held = {}
    for run in sys.argv[2].split(","):
        cm = j.lease(run)
        if cm.__enter__():
            held[run] = cm
    print(json.dumps(sorted(held)), flush=True)
    sys.stdin.readline()
    for cm in held.values():
        cm.__exit__(None, None, None)
    print("released", flush=True)
"""


def test_a_lease_is_held_by_one_of_several_processes_taking_it_at_once_and_released_on_release(
        s3: MotoServer, work: Location, tmp_path: Path) -> None:
    runs = [f"b-{i:04d}" for i in range(12)]
    for run in runs[::2]:  # half of them were left behind, expired, by a crashed run: all three take them over
        s3fs_for(s3).pipe_file(work.path(f"ingest/{run}/{journal.LEASE}"),
                               json.dumps({"owner": "crashed:1", "expires": time.time() - 60}).encode())
    takers = [Child(_CONTENDER, work.url, ",".join(runs), log=tmp_path / f"taker-{i}.log") for i in range(3)]
    try:
        assert [t.line() for t in takers] == ["ready"] * 3
        for t in takers:
            t.send("go")  # all three take the same leases in the same order, at once
        won = [json.loads(t.line()) for t in takers]
        assert sorted(r for w in won for r in w) == runs, won  # every lease has exactly one holder
        j = journal.ingest(work)
        for run in runs:
            assert j.is_leased(run)
            with j.lease(run) as held:
                assert held is False  # a fourth process is refused too
        for t in takers:
            t.send("release")
        assert [t.line() for t in takers] == ["released"] * 3
        assert [t.wait() for t in takers] == [0, 0, 0]
    finally:
        for t in takers:
            t.kill()
    for run in runs:
        assert not j.is_leased(run)
        with j.lease(run) as held:
            assert held


def test_of_two_takers_of_an_expired_lease_the_one_that_loses_the_race_is_refused_not_failed(
        s3: MotoServer, work: Location, monkeypatch: pytest.MonkeyPatch) -> None:
    path = work.path(f"ingest/b-0001/{journal.LEASE}")
    s3fs_for(s3).pipe_file(path, json.dumps({"owner": "crashed:1", "expires": time.time() - 60}).encode())
    first, second = store.lock(work, path, "first:1", 30.0), store.lock(work, path, "second:2", 30.0)
    read = second._current

    def read_then_lose_the_race() -> Any:  # the second taker has seen the expired lease; the first takes it over
        seen = read()
        assert first.acquire()
        return seen

    monkeypatch.setattr(second, "_current", read_then_lose_the_race)
    try:
        assert second.acquire() is False  # its takeover (If-Match on the expired ETag) is refused by the store
        assert _lease_body(s3, work, "b-0001")["owner"] == "first:1"
    finally:
        first.release()
    assert not journal.ingest(work).is_leased("b-0001")


def test_a_killed_holders_lease_is_kept_while_renewed_and_taken_over_only_once_expired(
        s3: MotoServer, work: Location, tmp_path: Path) -> None:
    ttl = 3.0
    holder = Child(_HOLDER, work.url, "b-0001", str(ttl), log=tmp_path / "holder.log")
    j = journal.ingest(work)
    try:
        assert holder.line() == "held"
        etags: set[str | None] = set()

        def renewed_twice() -> bool:
            etags.add(_lease_etag(s3, work, "b-0001"))
            return len(etags) >= 3

        wait_until(renewed_twice, "two renewals by the holder's heartbeat")
        with j.lease("b-0001") as held:
            assert held is False  # alive past its first TTL: renewed, so still its holder's
    finally:
        holder.kill()
    expires = _lease_body(s3, work, "b-0001")["expires"]  # the last renewal: nothing renews it now

    def taken() -> bool:
        with j.lease("b-0001") as held:
            if held:
                assert time.time() >= expires, "a live lease was taken over"
            else:  # refused: the lease is alive (or expired only since)
                assert j.is_leased("b-0001") or time.time() >= expires
            return held

    wait_until(taken, "the dead holder's lease to expire")
    assert not j.is_leased("b-0001")  # and ours was released in turn


def test_a_holder_paused_past_its_ttl_loses_the_lease_and_never_removes_its_successors(
        s3: MotoServer, work: Location, tmp_path: Path) -> None:
    holder = Child(_HOLDER, work.url, "b-0001", "2", log=tmp_path / "paused.log")
    j = journal.ingest(work)
    try:
        assert holder.line() == "held"
        holder.pause()  # a stalled worker: no renewal, no exit
        with j.lease("b-0001", wait=120) as held:
            assert held  # taken over once expired
            ours = _lease_body(s3, work, "b-0001")["owner"]
            holder.resume()
            holder.send("release")
            assert holder.line() == "released"
            assert holder.wait() == 0
            # its renewal was refused and its release removed nothing: the lease is still ours
            assert _lease_body(s3, work, "b-0001")["owner"] == ours
            assert ours == f"{socket.gethostname()}:{os.getpid()}"
            with j.lease("b-0001") as again:
                assert again is False
    finally:
        holder.resume()
        holder.kill()
    assert not j.is_leased("b-0001")


# --------------------------------------------------------------------------------------------
# a store where a lease could not be exclusive
# --------------------------------------------------------------------------------------------

# moto's S3 server, but one that drops the conditional headers of every request, as S3-compatible
# servers without conditional writes do: every conditional put succeeds.
_IGNORING_CONDITIONS = """
    import sys
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple
    app = DomainDispatcherApplication(create_backend_app)
    def ignoring_conditions(environ, start_response):
        environ.pop("HTTP_IF_NONE_MATCH", None)
        environ.pop("HTTP_IF_MATCH", None)
        return app(environ, start_response)
    run_simple("127.0.0.1", int(sys.argv[1]), ignoring_conditions, threaded=True, request_handler=MotoRequestHandler)
"""


class _ServerIgnoringConditions(MotoServer):
    def start(self) -> None:
        import textwrap

        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_IGNORING_CONDITIONS), str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                return True
            except OSError:
                return False

        wait_until(up, "the server ignoring conditions to start", timeout=60)


@pytest.fixture
def careless_store(s3: MotoServer) -> Any:
    server = _ServerIgnoringConditions()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_lease_on_a_store_that_ignores_conditional_writes_is_refused_not_granted_to_all(
        careless_store: MotoServer, archive: Any) -> None:
    from s3fs import S3FileSystem

    fs = S3FileSystem(endpoint_url=careless_store.endpoint, key="testing", secret="testing", skip_instance_cache=True)
    fs.mkdir("careless")
    options = {"endpoint_url": careless_store.endpoint}
    work = Location.at("work", "s3://careless/work", storage_options=options)
    refused = r"s3://careless/work cannot hold exclusive leases.*If-None-Match"
    with pytest.raises(LeaseUnsupportedError, match=refused), journal.ingest(work).lease("b-0001"):
        pass
    cfg = archive(landing=[{"url": "s3://careless/landing", "storage_options": options}],
                  work={"url": "s3://careless/work", "storage_options": options})
    with pytest.raises(LeaseUnsupportedError):
        intake.sweep(cfg)  # the sweep's exclusion is refused too, before it claims anything
    with pytest.raises(LeaseUnsupportedError), landing.sweep_lock(cfg.work):
        pass
    assert fs.find("careless") == []  # no lease, no manifest, no probe left behind


def test_a_lease_on_an_object_store_without_conditional_writes_here_is_refused() -> None:
    work = Location.at("work", "memory://pacs-work")
    with pytest.raises(LeaseUnsupportedError, match="memory://"), journal.ingest(work).lease("b-0001"):
        pass
    with pytest.raises(LeaseUnsupportedError):
        journal.ingest(work).is_leased("b-0001")
