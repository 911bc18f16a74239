"""PACS archive data platform: intake, tiered storage and capacity reporting on Airflow.

The package holds all the logic; the DAG files in ``dags/`` only wire tasks to it.
Modules, one concern each:

- ``config``      the YAML configuration, locations and their filesystems
- ``storage``     copy-and-hash, atomic writes and deletes on fsspec locations
- ``dicom``       header reading with pydicom (header only, never pixel data)
- ``validation``  reason codes and the rules that produce them
- ``layout``      deterministic tier paths built from validated UIDs only
- ``catalogue``   the DuckDB catalogue: schema, merge, Parquet snapshot
- ``journal``     the ingest work journal that makes every step resumable
- ``ingest``      sweep, process, merge and finalize steps of ``pacs_ingest``
- ``quarantine``  quarantined files and their re-submission
- ``synth``       synthetic archives for the demo, tests and benchmarks
- ``cli``         the ``pacs`` command
"""

__version__ = "0.1.0"
