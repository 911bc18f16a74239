-- What the merge would decide for one file that comes alone, against the catalogue, read-only
-- (`pacs header`). The precedence of include/sql/merge_decide.sql, steps 1-4 (5 needs other files
-- of the same merge; 6, the online tier's bytes, is asked of the store):
--   1. duplicate        the SOP instance is catalogued with these very bytes;
--   2. sop_conflict     the SOP instance is catalogued with other bytes;
--   3. patient_mismatch the study is catalogued under another patient;
--   4. series_conflict  the series is catalogued under another study.
-- NULL: the merge would catalogue it.
WITH known AS (
    SELECT
        (SELECT any_value(sha256) FROM image
         WHERE sop_instance_uid = $sop_instance_uid) AS cat_sha256,
        (SELECT any_value(patient_id) FROM study
         WHERE study_instance_uid = $study_instance_uid) AS owner_patient_id,
        (SELECT any_value(study_instance_uid) FROM series
         WHERE series_instance_uid = $series_instance_uid) AS owner_study_uid
)
SELECT CASE
    WHEN cat_sha256 IS NOT NULL AND cat_sha256 = $sha256 THEN 'duplicate'
    WHEN cat_sha256 IS NOT NULL THEN 'sop_conflict'
    WHEN owner_patient_id IS NOT NULL AND owner_patient_id <> $patient_id THEN 'patient_mismatch'
    WHEN owner_study_uid IS NOT NULL AND owner_study_uid <> $study_instance_uid THEN 'series_conflict'
END AS outcome
FROM known
