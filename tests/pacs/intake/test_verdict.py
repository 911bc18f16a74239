"""``pacs header``'s verdict is what intake then does: every file of the synthetic bad set is
judged before it is taken in, and the judgement is compared with the kind the generator wrote it
as and with what the ingest recorded for that very file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from helpers import query

from pacs import synth
from pacs.intake import run_ingest
from pacs.intake.verdict import judge_file


def test_the_verdict_of_each_bad_file_is_what_intake_then_does(archive: Any, tmp_path: Path) -> None:
    cfg = archive()
    landing = Path(cfg.landing[0].root)
    good = synth.generate_archive(tmp_path / "good", seed=5, patients=2, size_scale=0.03, count_scale=0.03)
    shutil.copytree(good.root, landing / "good")  # the bad set refers to the originals, kept here
    assert run_ingest(cfg)["catalogued"] == len(good.good())
    bad = synth.generate_bad_files(landing / "bad", seed=6, reference=good)
    assert {f.kind for f in bad} == set(synth.BAD_KINDS) - {"unsafe_path"}

    verdicts = {f.path: judge_file(f.path, cfg) for f in bad}
    for f in bad:
        verdict = verdicts[f.path]
        expected = ("duplicate", None) if f.kind == "duplicate" else ("quarantined", f.kind)
        assert (verdict.outcome, verdict.reason) == expected, (f.path, verdict)

    result = run_ingest(cfg)
    quarantined = dict(query(cfg, "SELECT source_uri, reason FROM quarantine"))
    for path, verdict in verdicts.items():
        assert quarantined.get(path) == verdict.reason, path  # None: not quarantined (the duplicates)
    assert result["duplicates"] == sum(v.outcome == "duplicate" for v in verdicts.values())
    assert result["catalogued"] == 0


def test_the_verdict_reads_nothing_into_the_archive(archive: Any, tmp_path: Path) -> None:
    cfg = archive()
    good = synth.generate_small_files(tmp_path / "elsewhere", 2, seed=8)
    before = sorted(p for p in Path(cfg.online.root).parent.rglob("*"))
    verdict = judge_file(good.files[0].path, cfg)
    assert verdict.outcome == "catalogued" and "does not exist yet" in verdict.checked
    assert sorted(p for p in Path(cfg.online.root).parent.rglob("*")) == before
    assert not cfg.duckdb.exists()
