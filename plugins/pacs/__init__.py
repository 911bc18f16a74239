"""PACS archive data platform: intake, tiered storage and capacity reporting on Airflow.

The package holds all the logic; the DAG files in ``dags/`` only wire tasks to it (through
:mod:`pacs.dagkit`, which loads none of the data stack). Each concept the README names has one
room, found by its name. The table of contents, every module (a test keeps it complete):

Shared
  - ``config``               the YAML configuration, every section validated at load
  - ``sizes``                sizes as people write them ("20 TB", "500 GiB")
  - ``errors``               every error: one root, terminal (fail at once) or transient (retry)
  - ``dagkit``               what DAG files import at parse time: pool, queue, assets, default args, task,
                             date, deadline alerts, the plan approval
  - ``alerts``               failure and deadline alerts of the DAGs (log, JSON record, optional webhook)
  - ``isolate``              a task's step in a fresh interpreter (the ingest merge): its memory ends with it
  - ``demo``                 ``make demo``: a synthetic hospital through ``pacs_ingest``

Store: where bytes live
  - ``store``                the one interface: publish, copy, read, hash, list, remove, lock
  - ``store.location``       a place in a tier and its key ↔ path ↔ URI
  - ``store.local``          the local-folder backend (no-replace publish, verified rename, flock)
  - ``store.objects``        the object-storage backend (checksummed conditional puts, lease object)
  - ``store.common``         what both backends share (hashing, temporary names)
  - ``store.transfer``       bulk verified puts, ranged verified reads, series packing

DICOM
  - ``dicom``                the header reader's public names
  - ``dicom.columns``        the one column table (keyword, column, kind, Arrow type)
  - ``dicom.header``         header reading with pydicom (header only, never pixel data)
  - ``dicom.values``         element values coerced to their column's type
  - ``dicom.validation``     reason codes and the rules that produce them
  - ``dicom.layout``         tier paths built from validated UIDs only
  - ``dicom.rejection_note`` the IOCM rejection codes; what a KOS rejection note rejects
  - ``dicom.acquisition``    acquisition parameters per modality (CT, MR, CR/DX/MG, US) from the header
  - ``dicom.dose_sr``        a Radiation Dose SR's irradiation events and totals (TID 10011, 10001)

Catalogue
  - ``catalogue``            the DuckDB catalogue's public names
  - ``catalogue.db``         connections (one writer), transactions, schema, memory bound
  - ``catalogue.sql``        named SQL from ``include/sql``
  - ``catalogue.merge``      decide, record placements, apply (the catalogue's side of the merge)
  - ``catalogue.sop_index``  the merge's SOP-instance lookup, sorted beside the catalogue (cost of the batch)
  - ``catalogue.snapshot``   the Parquet snapshot: read consistently, one refresh's state
  - ``catalogue.snapshot_refresh``  writing it: new immutable files for what changed, manifest last
  - ``catalogue.checks``     ``summary`` and the invariant ``check``
  - ``catalogue.backup``     verified backup generations in the offline tier, and restore
  - ``catalogue.rebuild``    the catalogue rebuilt from the tiers alone (resumable)

Journal
  - ``journal``              the runs of every workflow, typed steps, leases

Intake (``pacs_ingest``)
  - ``intake``               the steps in order, and ``run_ingest``
  - ``intake.landing``       the sweep: settled landing files into batch manifests
  - ``intake.process``       read, hash, parse, validate and store each file of a batch
  - ``intake.merge``         the single writer takes batches in (decide → place → apply)
  - ``intake.finalize``      landing files removed once their outcome is committed
  - ``intake.quarantine``    rejects with their reason and original bytes; re-submission
  - ``intake.staged``        the staged row and its status
  - ``intake.verdict``       what intake would do with one file (``pacs header``), read-only

Administration (``pacs_admin``, ``pacs_purge``)
  - ``admin``                identity corrections' public names
  - ``admin.corrections``    patient merge and study move, recorded as ``correction`` rows
  - ``admin.rejection``      ``pacs reject``: instances kept but out of figures, ``rejection`` rows
  - ``admin.purge``          ``pacs purge``: rejected/expired instances deleted from both tiers, ``deletion`` rows

Tiers (``pacs_lifecycle``, ``pacs_recall``, ``pacs_fixity``)
  - ``tiers``                the online and offline tiers
  - ``tiers.policy``         the lifecycle policy
  - ``tiers.lifecycle``      plan, migrate online → offline, switch, purge
  - ``tiers.recall``         studies back online, verified and pinned
  - ``tiers.fixity``         verify both tiers, reconcile listings, repair

Reports (``pacs_capacity_report``)
  - ``reports``              capacity and forecast
  - ``reports.capacity``     the capacity report's public names
  - ``reports.settings``     the ``capacity:`` settings
  - ``reports.extract``      the catalogue extract a report is computed from
  - ``reports.figures``      every figure of the report
  - ``reports.forecast``     the ingest model and the online-tier projection
  - ``reports.backtest``     the ingest model's backtest against seasonal naive
  - ``reports.charts``       the charts (SVG)
  - ``reports.html``         the self-contained HTML page
  - ``reports.publish``      publishing the report's files
  - ``reports.tables``       Arrow helpers of the report
  - ``reports.units``        GB, TB, months and bytes as text

Analysts
  - ``analyst``              SQL over the catalogue for analysts
  - ``analyst.query``        snapshot reads, ``--live``, ``--deidentified``, output formats
  - ``analyst.views``        the analysts' views
  - ``analyst.deid``         keyed pseudonyms and the de-identified views
  - ``export``               cohort export: a selection's files, verified
  - ``export.export``        select from the catalogue, copy from the fastest verified copy, manifest
  - ``export.deidentify``    PS3.15 Basic Application Level Confidentiality Profile for exported copies

Command line (argument parsing only)
  - ``cli``                  the ``pacs`` command
  - ``cli.__main__``         ``python -m pacs.cli``
  - ``cli.common``           ``--config`` and ``-v``, errors as one line and an exit status
  - ``cli.intake``           ``pacs ingest``, ``pacs resubmit``, ``pacs header``
  - ``cli.catalogue``        ``pacs summary``, ``pacs check``
  - ``cli.query``            ``pacs query``
  - ``cli.report``           ``pacs report``
  - ``cli.synth``            ``pacs synth``
  - ``cli.tiers``            ``pacs lifecycle``, ``pacs recall``, ``pacs fixity``
  - ``cli.admin``            ``pacs patient merge``, ``pacs study move``, ``pacs reject``
  - ``cli.purge``            ``pacs purge``
  - ``cli.backup``           ``pacs backup``, ``pacs restore``, ``pacs rebuild``
  - ``cli.export``           ``pacs export``

Synthetic data (demo, tests, benchmarks)
  - ``synth``                the generators' public names
  - ``synth.__main__``       ``python -m pacs.synth``
  - ``synth.archive``        a realistic hospital archive
  - ``synth.arrival``        when each file reached the archive
  - ``synth.bad``            the bad set and duplicates
  - ``synth.builder``        the state of one generation run
  - ``synth.bulk``           benchmark sets (CT slices, small files)
  - ``synth.acquisition``    realistic acquisition parameters per modality
  - ``synth.dose``           CT Radiation Dose SRs whose events and totals agree
  - ``synth.encode``         DICOM byte encoding
  - ``synth.modalities``     per-modality vocabulary
  - ``synth.model``          what a run writes (files, results, records)
  - ``synth.pixels``         seeded pixel content
  - ``synth.series``         one series' bytes
"""

__version__ = "0.1.0"
