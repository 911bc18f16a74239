-- Deletion (pacs.admin.purge): a recorded plan of the instances a purge deletes, then the run.
-- The audit of what was deleted is table `deletion` (schema_admin.sql). Idempotent, run at
-- every open.

CREATE TABLE IF NOT EXISTS purge_run (
    plan_id          VARCHAR PRIMARY KEY,   -- purge-<logical date>-<run id hash>[-dry]
    run_id           VARCHAR NOT NULL,
    logical_date     DATE NOT NULL,
    dry_run          BOOLEAN NOT NULL,
    criteria         VARCHAR NOT NULL,      -- JSON: rejected_before, retention rules
    instances        BIGINT NOT NULL,       -- planned for deletion
    bytes            BIGINT NOT NULL,
    refused_held     BIGINT NOT NULL,       -- eligible, but their study or patient is on hold
    refused_pinned   BIGINT NOT NULL,       -- eligible, but their study is pinned online (recall)
    refused_busy     BIGINT NOT NULL,       -- eligible, but their study is migrating
    state            VARCHAR NOT NULL,      -- planned | done | dry_run | rejected
    planned_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
    instances_deleted BIGINT,
    copies_deleted   BIGINT,
    bytes_freed      BIGINT,
    refused_at_purge BIGINT                 -- planned, but no longer eligible when the purge ran
);

CREATE TABLE IF NOT EXISTS purge_plan (
    plan_id             VARCHAR NOT NULL,
    sop_instance_uid    VARCHAR NOT NULL,
    series_instance_uid VARCHAR NOT NULL,
    study_instance_uid  VARCHAR NOT NULL,
    why                 VARCHAR NOT NULL,   -- rejected:<code> | retention:<modality>:<years>y
    size_bytes          BIGINT NOT NULL,
    online_uri          VARCHAR,            -- the copies when planned
    offline_uri         VARCHAR,
    packed              BOOLEAN NOT NULL,
    state               VARCHAR NOT NULL,   -- planned | deleted | refused | rejected
    PRIMARY KEY (plan_id, sop_instance_uid)
);
