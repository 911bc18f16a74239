"""``pacs backup``, ``pacs restore`` and ``pacs rebuild`` from a shell: what they print, their
exit status, and a user's mistake as one line (exit status 2, the traceback only under -v)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, write_config
from helpers import query as _q

from pacs import synth
from pacs.config import load_config
from pacs.intake import run_ingest


def _pacs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "pacs.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


def _one_line(out: subprocess.CompletedProcess[str], command: str, *says: str) -> None:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith(f"pacs {command}: ") and "Traceback" not in out.stderr, out.stderr
    for text in says:
        assert text in lines[0], lines[0]


def test_backup_restore_and_rebuild_from_a_shell(tmp_path: Path) -> None:
    path = write_config(tmp_path / "archive")
    cfg = load_config(path)
    c = ["--config", str(path)]
    _one_line(_pacs(*c, "backup", cwd=tmp_path), "backup", "does not exist", "nothing to back up")
    _one_line(_pacs(*c, "restore", cwd=tmp_path), "restore", "no catalogue backup", "pacs backup")
    synth.generate_archive(Path(cfg.landing[0].root), seed=9, patients=2, count_scale=0.02, size_scale=0.02)
    run_ingest(cfg)
    images = _q(cfg, "SELECT count(*) FROM image")[0][0]

    taken = _pacs(*c, "backup", cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert json.loads(taken.stdout)["generation"] == 1 and "generation 1:" in taken.stderr
    listed = json.loads(_pacs(*c, "backup", "--list", cwd=tmp_path).stdout)
    assert [g["generation"] for g in listed] == [1] and listed[0]["counts"]["image"] == images

    _one_line(_pacs(*c, "restore", cwd=tmp_path), "restore", "exists", "--force")
    _one_line(_pacs(*c, "restore", "--generation", "7", "--force", cwd=tmp_path), "restore",
              "no backup generation 7", "there are 1")
    _one_line(_pacs(*c, "rebuild", cwd=tmp_path), "rebuild", "exists", "--force")

    rebuilt = _pacs(*c, "rebuild", "--force", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    out = json.loads(rebuilt.stdout)
    assert out["counts"]["image"] == images and out["from_backup"] == 1
    assert "files read" in rebuilt.stderr  # progress, on stderr
    assert _pacs(*c, "check", cwd=tmp_path).returncode == 0

    restored = _pacs(*c, "restore", "--force", cwd=tmp_path)
    assert restored.returncode == 0 and json.loads(restored.stdout)["generation"] == 1, restored.stderr
    assert _q(cfg, "SELECT count(*) FROM image")[0][0] == images
