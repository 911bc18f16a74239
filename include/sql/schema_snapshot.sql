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

-- Rows a writer deleted from the catalogue since the last refresh (a purge deletes image rows,
-- and series and studies left empty): a deleted row has no updated_at to find it by, so the
-- writer records it here in its own transaction; the next refresh rewrites the files holding
-- its cluster key without it, and empties this table in its transaction.
CREATE TABLE IF NOT EXISTS snapshot_removed (
    tbl        VARCHAR NOT NULL,   -- snapshot table: image | series | study
    row_key    VARCHAR NOT NULL,   -- the row's key (sop_instance_uid, series_instance_uid, ...)
    cluster    VARCHAR NOT NULL,   -- its cluster key (the study for study/series/image)
    removed_at TIMESTAMPTZ NOT NULL
);
