-- The Parquet snapshot's own index (pacs.catalogue.snapshot_refresh): which immutable files the published
-- snapshot holds, and which cluster keys (a study for study/series/image, a patient, a batch for
-- quarantine/ingest_batch) each file holds rows of, so that a refresh rewrites only the files
-- holding rows that changed. Written in the refresh's transaction, after its manifest.
CREATE TABLE IF NOT EXISTS snapshot_file (
    name       VARCHAR PRIMARY KEY,  -- path under the snapshot location, e.g. image/study_year=2025/000012-0.parquet
    tbl        VARCHAR NOT NULL,
    part       VARCHAR NOT NULL,     -- 'study_year=<YYYY>', or '' for an unpartitioned table
    rows       BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    generation BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS snapshot_key (
    tbl  VARCHAR NOT NULL,
    key  VARCHAR NOT NULL,
    name VARCHAR NOT NULL
);
