-- Identity corrections (pacs.admin): a patient merged into another, a study moved to another
-- patient. Recorded, never rewriting a file: the catalogue shows the effective patient
-- (study.patient_id), the header's stays queryable (study.header_patient_id), and every
-- correction is a row of `correction`. Idempotent, run at every open; the ALTERs upgrade a
-- catalogue created before corrections existed.

-- The patient a merged patient ID now stands for (NULL: not merged). Always a patient that is
-- itself not merged: a merge into OLD re-points the patients merged into OLD (admin_patient_merge.sql).
ALTER TABLE patient ADD COLUMN IF NOT EXISTS merged_into VARCHAR;

-- The PatientID the study's files carry when a correction gave the study another patient (set by
-- the first correction of the study and kept through later ones; NULL: never corrected, the
-- header's patient is patient_id). Later files naming it follow the correction (merge_decide.sql).
ALTER TABLE study ADD COLUMN IF NOT EXISTS header_patient_id VARCHAR;

CREATE TABLE IF NOT EXISTS correction (
    correction_id      VARCHAR PRIMARY KEY,
    action             VARCHAR NOT NULL,   -- patient_merge | study_move
    study_instance_uid VARCHAR,            -- study_move only
    from_patient_id    VARCHAR NOT NULL,
    to_patient_id      VARCHAR NOT NULL,
    before             VARCHAR NOT NULL,   -- JSON: the affected keys as they were
    reason             VARCHAR NOT NULL,
    corrected_at       TIMESTAMPTZ NOT NULL,
    run_id             VARCHAR NOT NULL    -- the Airflow run, or cli-<time>-<user>
);

-- Rejections (pacs.admin.rejection): an instance is rejected when a row here names its SOP
-- instance. Rejected instances are kept (files and image rows stay) but are left out of analyst
-- views, lifecycle plans, capacity figures and recall; `pacs purge` may delete them. A row may
-- come before its instance (a Key Object Selection rejection note that arrives first): it
-- applies when the instance is catalogued. One row per SOP instance: the first rejection stands.
CREATE TABLE IF NOT EXISTS rejection (
    sop_instance_uid      VARCHAR NOT NULL,
    series_instance_uid   VARCHAR,            -- as the note or the catalogue names it
    study_instance_uid    VARCHAR,
    code                  VARCHAR NOT NULL,   -- DCM code value: 113001 | 113037 | 113038 | 113039
    meaning               VARCHAR NOT NULL,   -- its code meaning, e.g. Rejected for Quality Reasons
    source                VARCHAR NOT NULL,   -- cli | kos
    note_sop_instance_uid VARCHAR,            -- the KOS rejection note (source = kos)
    reason                VARCHAR,            -- free text (cli)
    rejected_at           TIMESTAMPTZ NOT NULL,
    run_id                VARCHAR NOT NULL
);

-- Deletions (pacs.admin.purge): one row per copy of an instance deleted from a tier, written in
-- the purge's commit that removes the image row; it outlives the instance, in the catalogue and
-- the snapshot. No PHI: UIDs, checksum, tier, where, when and why.
CREATE TABLE IF NOT EXISTS deletion (
    sop_instance_uid    VARCHAR NOT NULL,
    series_instance_uid VARCHAR NOT NULL,
    study_instance_uid  VARCHAR NOT NULL,
    sha256              VARCHAR NOT NULL,
    size_bytes          BIGINT NOT NULL,
    tier                VARCHAR NOT NULL,   -- online | offline
    uri                 VARCHAR NOT NULL,   -- the copy deleted (packed: the series tar it was in)
    why                 VARCHAR NOT NULL,   -- rejected:<code> | retention:<modality>:<years>y
    plan_id             VARCHAR NOT NULL,
    deleted_at          TIMESTAMPTZ NOT NULL,
    run_id              VARCHAR NOT NULL
);
