-- The catalogue: Patient -> Study -> Series -> Image, plus quarantine and ingest audit.
-- Columns are the DICOM keywords in snake_case. Statements are idempotent (run at every open).
-- image has no PRIMARY KEY index on purpose: the merge (the only writer) inserts only SOP
-- instances it has checked are absent (through image_sop, below); tests and `pacs check` assert
-- uniqueness. An ART index on sop_instance_uid is no alternative: DuckDB keeps every ART buffer
-- it loads pinned (256 KB each) until the file is closed, so a few thousand lookups of random
-- UIDs (pydicom's generate_uid) on a 30M-image catalogue exceed the 512 MB memory limit.

CREATE TABLE IF NOT EXISTS catalogue_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS patient (
    patient_id           VARCHAR PRIMARY KEY,
    issuer_of_patient_id VARCHAR,
    patient_name         VARCHAR,
    patient_birth_date   DATE,
    patient_sex          VARCHAR,
    study_count          INTEGER NOT NULL DEFAULT 0,
    first_study_date     DATE,
    last_study_date      DATE,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS study (
    study_instance_uid       VARCHAR PRIMARY KEY,
    patient_id               VARCHAR NOT NULL,
    study_date               DATE,
    study_time               VARCHAR,
    accession_number         VARCHAR,
    study_id                 VARCHAR,
    study_description        VARCHAR,
    referring_physician_name VARCHAR,
    institution_name         VARCHAR,
    patient_age              VARCHAR,
    modalities_in_study      VARCHAR[],
    series_count             INTEGER NOT NULL DEFAULT 0,
    image_count              BIGINT NOT NULL DEFAULT 0,
    size_bytes               BIGINT NOT NULL DEFAULT 0,
    online_image_count       BIGINT NOT NULL DEFAULT 0,
    offline_image_count      BIGINT NOT NULL DEFAULT 0,
    first_received_at        TIMESTAMPTZ,
    last_received_at         TIMESTAMPTZ,
    tier_state               VARCHAR NOT NULL DEFAULT 'online',  -- online | migrating | offline
    pinned_until             DATE,                                -- recall pin (lifecycle keeps it online)
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS series (
    series_instance_uid     VARCHAR PRIMARY KEY,
    study_instance_uid      VARCHAR NOT NULL,
    modality                VARCHAR NOT NULL,
    series_number           INTEGER,
    series_description      VARCHAR,
    series_date             DATE,
    body_part_examined      VARCHAR,
    manufacturer            VARCHAR,
    manufacturer_model_name VARCHAR,
    station_name            VARCHAR,
    image_count             BIGINT NOT NULL DEFAULT 0,
    size_bytes              BIGINT NOT NULL DEFAULT 0,
    first_received_at       TIMESTAMPTZ,
    last_received_at        TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS image (
    sop_instance_uid    VARCHAR NOT NULL,
    sop_class_uid       VARCHAR NOT NULL,
    series_instance_uid VARCHAR NOT NULL,
    study_instance_uid  VARCHAR NOT NULL,
    instance_number     INTEGER,
    content_date        DATE,
    transfer_syntax_uid VARCHAR,
    rows                INTEGER,
    columns             INTEGER,
    number_of_frames    INTEGER,
    bits_allocated      INTEGER,
    sha256              VARCHAR NOT NULL,
    size_bytes          BIGINT NOT NULL,
    tier                VARCHAR NOT NULL,   -- online | offline: where the fastest copy is
    uri                 VARCHAR NOT NULL,   -- that copy
    online_uri          VARCHAR,            -- every copy of the file, by tier
    online_verified_at  TIMESTAMPTZ,
    offline_uri         VARCHAR,
    offline_offset      BIGINT,             -- member offset/length when packed in a series tar
    offline_length      BIGINT,
    offline_verified_at TIMESTAMPTZ,
    received_at         TIMESTAMPTZ NOT NULL, -- when the file arrived in landing
    ingested_at         TIMESTAMPTZ NOT NULL,
    batch_id            VARCHAR NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id      VARCHAR PRIMARY KEY,   -- <batch_id>:<row>
    batch_id           VARCHAR NOT NULL,
    source_uri         VARCHAR NOT NULL,
    quarantine_uri     VARCHAR NOT NULL,
    sidecar_uri        VARCHAR NOT NULL,
    reason             VARCHAR NOT NULL,
    detail             VARCHAR NOT NULL,
    sha256             VARCHAR,
    size_bytes         BIGINT,
    sop_instance_uid   VARCHAR,               -- only when valid
    study_instance_uid VARCHAR,               -- only when valid
    quarantined_at     TIMESTAMPTZ NOT NULL,
    status             VARCHAR NOT NULL DEFAULT 'quarantined',  -- quarantined | resubmitted
    resubmitted_at     TIMESTAMPTZ,
    resubmitted_uri    VARCHAR
);

CREATE TABLE IF NOT EXISTS ingest_batch (
    batch_id      VARCHAR PRIMARY KEY,
    run_id        VARCHAR,
    files         INTEGER NOT NULL,
    catalogued    INTEGER NOT NULL,
    duplicates    INTEGER NOT NULL,
    quarantined   INTEGER NOT NULL,
    deferred      INTEGER NOT NULL,
    bytes         BIGINT NOT NULL,
    merged_at     TIMESTAMPTZ NOT NULL
);

-- The merge's SOP-instance lookup: one 16-byte row per image row (sop_hash = the low 64 bits of
-- md5(sop_instance_uid), and the image row's ingested_at), inserted by the merge with the image
-- row. The merge scans it instead of image (an eighth of the bytes of the UIDs), then reads the
-- few matching image rows in the row groups of their ingested_at only (zone maps: image rows are
-- appended in merge order). A filter, never the truth: a stale row costs a lookup in image, a
-- missing one would let a duplicate SOP instance in, so any other writer that inserts image rows
-- inserts these too. `pacs check` verifies that it covers image.
CREATE TABLE IF NOT EXISTS image_sop (
    sop_hash    UBIGINT NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
);

-- A study's images by when they were ingested: one row per study per merge that added images to
-- it (and the merge's ingested_at). Image rows are appended in merge order, so a study's rows
-- sit in the row groups of its few ingested_at values: a lookup of one study's files (pacs
-- export) reads those row groups only (zone maps), not a row per catalogued image. A filter,
-- never the truth: a lookup checks the rows it found against study.image_count and scans image
-- when they differ. Filled from image at the first open of a catalogue older than this table
-- (pacs.catalogue.db.ensure_schema).
CREATE TABLE IF NOT EXISTS study_ingest (
    study_instance_uid VARCHAR NOT NULL,
    ingested_at        TIMESTAMPTZ NOT NULL
);

-- Rebuilt whole when it holds fewer rows than image (a catalogue older than image_sop, or an
-- interrupted rebuild); two row counts otherwise. A rebuild drops the token its sorted index
-- matches (pacs.catalogue.sop_index), so that index is rebuilt too.
DELETE FROM catalogue_meta WHERE key = 'image_sop_token'
  AND (SELECT count(*) FROM image_sop) < (SELECT count(*) FROM image);

DELETE FROM image_sop WHERE (SELECT count(*) FROM image_sop) < (SELECT count(*) FROM image);

INSERT INTO image_sop
SELECT (md5_number(sop_instance_uid) >> 64)::UBIGINT, ingested_at FROM image
WHERE (SELECT count(*) FROM image_sop) < (SELECT count(*) FROM image);
