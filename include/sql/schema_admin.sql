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
