-- Hierarchical storage: lifecycle plans and runs, recalls, and fixity findings.
-- Copies of each image live in image.online_uri / image.offline_uri (+ offset/length when
-- packed); these tables record why and when they moved.

CREATE TABLE IF NOT EXISTS lifecycle_run (
    plan_id       VARCHAR PRIMARY KEY,     -- <logical date>-<run id hash>
    run_id        VARCHAR,
    logical_date  DATE NOT NULL,
    dry_run       BOOLEAN NOT NULL,
    policy        VARCHAR NOT NULL,        -- the policy used, as JSON
    studies       INTEGER NOT NULL,
    images        BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    online_bytes_before BIGINT NOT NULL,
    state         VARCHAR NOT NULL,        -- planned | done | partial | rejected
    planned_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    studies_moved INTEGER,
    images_moved  BIGINT,
    bytes_moved   BIGINT
);

CREATE TABLE IF NOT EXISTS lifecycle_plan (
    plan_id            VARCHAR NOT NULL,
    study_instance_uid VARCHAR NOT NULL,
    rule               VARCHAR NOT NULL,   -- retention | modality_override | watermark | recall_expired
                                           -- | archive_copy
    evict              BOOLEAN NOT NULL,   -- false: copy offline only, the online copy stays
    retention_years    DOUBLE,
    age_date           DATE,               -- the date the age rule looked at
    images             BIGINT NOT NULL,    -- online images to move
    bytes              BIGINT NOT NULL,
    batch_no           INTEGER NOT NULL,
    state              VARCHAR NOT NULL,   -- planned | moved | failed | rejected
    PRIMARY KEY (plan_id, study_instance_uid)
);

CREATE TABLE IF NOT EXISTS recall (
    recall_id          VARCHAR NOT NULL,
    study_instance_uid VARCHAR NOT NULL,
    run_id             VARCHAR,
    pinned_until       DATE NOT NULL,
    images             BIGINT NOT NULL,
    bytes              BIGINT NOT NULL,
    state              VARCHAR NOT NULL,   -- requested | online | failed
    requested_at       TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    PRIMARY KEY (recall_id, study_instance_uid)
);

CREATE TABLE IF NOT EXISTS fixity_run (
    fixity_id        VARCHAR PRIMARY KEY,
    run_id           VARCHAR,
    logical_date     DATE NOT NULL,
    online_checked   BIGINT NOT NULL,
    offline_checked  BIGINT NOT NULL,   -- objects (a packed series tar counts once)
    offline_total    BIGINT NOT NULL,
    findings         INTEGER NOT NULL,
    unresolved       INTEGER NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS fixity_finding (
    fixity_id        VARCHAR NOT NULL,
    tier             VARCHAR NOT NULL,   -- online | offline
    kind             VARCHAR NOT NULL,   -- missing | corrupt | orphan
    uri              VARCHAR NOT NULL,
    sop_instance_uid VARCHAR,
    expected_sha256  VARCHAR,
    actual_sha256    VARCHAR,
    detail           VARCHAR NOT NULL,
    found_at         TIMESTAMPTZ NOT NULL,
    repaired_at      TIMESTAMPTZ,
    repair           VARCHAR,
    PRIMARY KEY (fixity_id, tier, uri)
);
