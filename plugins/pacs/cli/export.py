"""``pacs export``: a cohort's DICOM files to a folder or an ``s3://`` prefix.

Argument parsing only; the work is :mod:`pacs.export.export` (select from the catalogue, read
each instance's fastest verified copy, write ``patient/study/series/sop.dcm`` and a manifest;
resumable) and, with ``--deidentify``, :mod:`pacs.export.deidentify`. Prints the counts as JSON;
progress goes to stderr. Exit status 1 when de-identification refused files (burned-in
annotation): the rest is exported, the refused ones are listed in ``refused.csv``.
"""

from __future__ import annotations

import argparse
import json
import logging

from pacs.cli.common import command_parser, load, note


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs export``."""
    p = command_parser(name, "Export the DICOM files of studies, series or instances to a local folder or an "
                             "s3:// prefix (patient/study/series/sop.dcm, with manifest.csv and manifest.parquet), "
                             "each verified against the catalogue's sha256, from the fastest copy. Resumable: run "
                             "it again after a kill. The archive is never changed.")
    p.add_argument("--to", required=True, metavar="FOLDER_OR_S3", help="the target folder or s3://bucket/prefix")
    p.add_argument("--query", metavar="SQL", help="SQL over the analysts' views returning study_instance_uid, "
                                                  "series_instance_uid and/or sop_instance_uid")
    p.add_argument("--study", action="append", default=[], metavar="UID", help="a StudyInstanceUID (repeatable)")
    p.add_argument("--series", action="append", default=[], metavar="UID", help="a SeriesInstanceUID (repeatable)")
    p.add_argument("--sop", action="append", default=[], metavar="UID", help="a SOPInstanceUID (repeatable)")
    p.add_argument("--accession", action="append", default=[], metavar="NUMBER", help="an AccessionNumber "
                                                                                       "(repeatable)")
    p.add_argument("--patient-id", action="append", default=[], metavar="ID", help="a PatientID (repeatable)")
    p.add_argument("--deidentify", action="store_true", help="apply DICOM PS3.15's Basic Application Level "
                   "Confidentiality Profile to the copies, with the pseudonym key ($PACS_PSEUDONYM_KEY)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="parallel reads and writes (default: one per core for local copies, 16 for object storage)")
    p.set_defaults(run=_export, log_level=logging.INFO)
    return p


def _export(args: argparse.Namespace) -> int:
    from pacs.cli.admin import _run_id
    from pacs.export.export import export, selection

    cfg = load(args)
    sel = selection(cfg, query=args.query, studies=args.study, accessions=args.accession,
                    patient_ids=args.patient_id, series=args.series, sops=args.sop)
    out = export(cfg, args.to, sel, deidentify=args.deidentify, workers=args.workers, run_id=_run_id())
    print(json.dumps(out, indent=1, default=str))
    if out["status"] == "partial":
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(out["refused_reasons"].items()))
        note("export", f"partial: {out['instances'] - out['refused']} of {out['instances']} instance(s) in {args.to}; "
                       f"{out['refused']} refused by de-identification ({reasons}), listed in {out['refused_list']}")
        return 1
    note("export", f"{out['instances']} instance(s) of {out['studies']} stud(ies) in {args.to}; manifest "
                   f"{out['manifest']}")
    return 0
