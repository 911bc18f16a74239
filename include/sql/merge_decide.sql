-- Decide each staged file's outcome against the catalogue (the merge's only read).
-- Input: temp table `staged` (one row per landing file of the batches being merged).
-- "First received wins": within one merge, files are ordered by received_at, then source URI.
-- Output: temp table `decided` = staged + outcome/reason/detail.
CREATE OR REPLACE TEMP TABLE decided AS
WITH ok AS (
    SELECT s.* FROM staged s WHERE s.status = 'ok'
),
-- Only SOP instances / studies that occur more than once in this merge need ordering.
multi_sop AS (
    SELECT sop_instance_uid FROM ok GROUP BY sop_instance_uid HAVING count(*) > 1
),
multi_study AS (
    SELECT study_instance_uid FROM ok GROUP BY study_instance_uid HAVING count(DISTINCT patient_id) > 1
),
study_owner AS (
    SELECT o.study_instance_uid, arg_min(o.patient_id, (o.received_at, o.source_uri, o.batch_id, o.row_no)) AS owner_patient_id
    FROM ok o SEMI JOIN multi_study m USING (study_instance_uid)
    GROUP BY o.study_instance_uid
),
known AS (
    SELECT o.*,
           i.sha256 AS cat_sha256,
           coalesce(st.patient_id, so.owner_patient_id) AS owner_patient_id
    FROM ok o
    LEFT JOIN image i ON i.sop_instance_uid = o.sop_instance_uid
    LEFT JOIN study st ON st.study_instance_uid = o.study_instance_uid
    LEFT JOIN study_owner so ON so.study_instance_uid = o.study_instance_uid
),
early AS (
    SELECT *, CASE
        WHEN cat_sha256 IS NOT NULL AND cat_sha256 = sha256 THEN 'duplicate'
        WHEN cat_sha256 IS NOT NULL THEN 'sop_conflict'
        WHEN owner_patient_id IS NOT NULL AND owner_patient_id <> patient_id THEN 'patient_mismatch'
    END AS early_outcome
    FROM known
),
-- Among files still in the running, the first received copy of each SOP instance wins, even
-- when a later one (another batch) reached the online path first: that one is quarantined and
-- the winner's bytes replace it before COMMIT (replace_dst).
sop_first AS (
    SELECT e.sop_instance_uid,
           arg_min(e.sha256, (e.received_at, e.source_uri, e.batch_id, e.row_no)) AS first_sha256,
           min((e.received_at, e.source_uri, e.batch_id, e.row_no)) AS first_key,
           bool_or(coalesce(e.in_place, false)) AS any_in_place
    FROM early e SEMI JOIN multi_sop m USING (sop_instance_uid)
    WHERE e.early_outcome IS NULL
    GROUP BY e.sop_instance_uid
),
ranked AS (
    SELECT e.*,
           f.first_sha256,
           f.first_key IS NULL OR f.first_key = (e.received_at, e.source_uri, e.batch_id, e.row_no) AS is_first,
           coalesce(e.in_place, false) OR coalesce(f.any_in_place, false) AS placeable
    FROM early e LEFT JOIN sop_first f USING (sop_instance_uid)
),
decided_ok AS (
    SELECT * EXCLUDE (cat_sha256, owner_patient_id, early_outcome, reason, detail, first_sha256, is_first, placeable),
        CASE
            WHEN early_outcome = 'duplicate' THEN 'duplicate'
            WHEN early_outcome IS NOT NULL THEN 'quarantined'
            WHEN NOT is_first AND first_sha256 = sha256 THEN 'duplicate'
            WHEN NOT is_first THEN 'quarantined'
            WHEN placeable THEN 'catalogued'
            ELSE 'quarantined'
        END AS outcome,
        CASE
            WHEN early_outcome IN ('sop_conflict', 'patient_mismatch') THEN early_outcome
            WHEN early_outcome = 'duplicate' THEN NULL
            WHEN NOT is_first AND first_sha256 = sha256 THEN NULL
            WHEN NOT is_first THEN 'sop_conflict'
            WHEN placeable THEN NULL
            ELSE 'sop_conflict'
        END AS reason,
        CASE
            WHEN early_outcome = 'sop_conflict'
                THEN 'the SOP instance is already catalogued with different bytes'
            WHEN early_outcome = 'patient_mismatch'
                THEN 'the study is already catalogued, or was received earlier, under another patient ID'
            WHEN early_outcome = 'duplicate' THEN NULL
            WHEN NOT is_first AND first_sha256 = sha256 THEN NULL
            WHEN NOT is_first
                THEN 'a file with this SOP instance UID and different bytes was received earlier'
            WHEN placeable THEN NULL
            ELSE 'the online tier already holds different, uncatalogued bytes for this SOP instance'
        END AS detail,
        (early_outcome IS NULL AND is_first AND placeable AND NOT coalesce(in_place, false)) AS replace_dst
    FROM ranked
)
SELECT * FROM decided_ok
UNION ALL BY NAME
SELECT s.*, CASE s.status WHEN 'rejected' THEN 'quarantined' ELSE 'deferred' END AS outcome,
       false AS replace_dst
FROM staged s WHERE s.status <> 'ok';
