"""The sweep's exclusion with landing and the work journal on object storage (issue 11): sweeps
started at once in separate processes, on moto's S3 server, never claim one landing file twice
and together claim every settled file exactly once.

The expected claims are computed from what the test uploaded, not from the sweep's own counts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import MotoServer, s3fs_for
from processes import Child

from pacs import journal

_SWEEPER = """
    import json, sys
    from pacs import intake
    from pacs.config import load_config
    cfg = load_config(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(intake.sweep(cfg, run_id=sys.argv[2])), flush=True)
"""


def _upload(s3: MotoServer, keys: list[str]) -> set[str]:
    fs = s3fs_for(s3)
    for key in keys:
        fs.pipe_file(f"landing-sweep/{key}", key.encode() * 10)
    return {f"s3://landing-sweep/{k}" for k in keys}


def _sweep_at_once(cfg: Any, tmp_path: Path, names: list[str]) -> dict[str, list[str]]:
    """Start one sweep per name in its own process, let them go at the same moment; what each returned."""
    sweepers = {n: Child(_SWEEPER, str(cfg.path), n, log=tmp_path / f"{n}.log") for n in names}
    try:
        assert [s.line() for s in sweepers.values()] == ["ready"] * len(names)
        for s in sweepers.values():
            s.send("go")
        returned = {n: json.loads(s.line()) for n, s in sweepers.items()}
        assert [s.wait() for s in sweepers.values()] == [0] * len(names)
    finally:
        for s in sweepers.values():
            s.kill()
    return returned


def _claims(cfg: Any) -> tuple[Counter[str], dict[str, str]]:
    """How many batch manifests claim each landing URI, and which sweep wrote each batch."""
    j = journal.ingest(cfg.work)
    claims: Counter[str] = Counter()
    written_by = {}
    for batch in j.runs():
        manifest = j.read_json(batch, journal.MANIFEST)
        written_by[batch] = manifest["run_id"]
        claims.update(f["uri"] for f in manifest["files"])
    return claims, written_by


def test_sweeps_at_once_in_separate_processes_claim_every_settled_file_exactly_once(
        s3: MotoServer, archive: Any, tmp_path: Path) -> None:
    fs = s3fs_for(s3)
    fs.mkdir("landing-sweep")
    fs.mkdir("work-sweep")
    cfg = archive(landing=["s3://landing-sweep/in"], work="s3://work-sweep/journal",
                  ingest={"batch_size": 7, "workers": 1, "fsync": False})
    settled = _upload(s3, [f"in/modality-{i % 3}/file-{i:03d}.dcm" for i in range(90)])
    _upload(s3, ["in/upload.dcm.part", "in/.hidden.dcm", "in/modality-0/copying.tmp"])  # never taken

    returned = _sweep_at_once(cfg, tmp_path, ["sweep-a", "sweep-b", "sweep-c"])
    claims, written_by = _claims(cfg)
    assert set(claims) == settled  # every settled file is claimed, and nothing else
    assert set(claims.values()) == {1}  # by exactly one batch
    for batch, sweep in written_by.items():
        assert batch in returned[sweep]  # each sweep goes on with the batches it wrote
    assert len(written_by) == 13  # 90 files in batches of 7: all claimed by one sweep, the others found them open

    more = _upload(s3, [f"in/modality-{i % 3}/file-{i:03d}.dcm" for i in range(90, 130)])
    _sweep_at_once(cfg, tmp_path, ["sweep-d", "sweep-e", "sweep-f"])
    claims, written_by = _claims(cfg)
    assert set(claims) == settled | more and set(claims.values()) == {1}
    assert len(written_by) == 13 + 6
