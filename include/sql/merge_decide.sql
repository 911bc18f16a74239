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
-- Among files still in the running, the first received copy of each SOP instance wins.
sop_first AS (
    SELECT e.sop_instance_uid,
           arg_min(e.sha256, (e.received_at, e.source_uri, e.batch_id, e.row_no)) AS first_sha256,
           min((e.received_at, e.source_uri, e.batch_id, e.row_no)) AS first_key
    FROM early e SEMI JOIN multi_sop m USING (sop_instance_uid)
    WHERE e.early_outcome IS NULL
    GROUP BY e.sop_instance_uid
),
decided_ok AS (
    SELECT e.* EXCLUDE (cat_sha256, owner_patient_id, early_outcome, reason, detail),
        CASE
            WHEN e.early_outcome = 'duplicate' THEN 'duplicate'
            WHEN e.early_outcome IS NOT NULL THEN 'quarantined'
            WHEN f.first_sha256 IS NOT NULL AND f.first_sha256 <> e.sha256 THEN 'quarantined'
            WHEN f.first_sha256 IS NOT NULL
                 AND f.first_key <> (e.received_at, e.source_uri, e.batch_id, e.row_no) THEN 'duplicate'
            WHEN NOT e.in_place THEN 'quarantined'
            ELSE 'catalogued'
        END AS outcome,
        CASE
            WHEN e.early_outcome IN ('sop_conflict', 'patient_mismatch') THEN e.early_outcome
            WHEN e.early_outcome = 'duplicate' THEN NULL
            WHEN f.first_sha256 IS NOT NULL AND f.first_sha256 <> e.sha256 THEN 'sop_conflict'
            WHEN f.first_sha256 IS NOT NULL
                 AND f.first_key <> (e.received_at, e.source_uri, e.batch_id, e.row_no) THEN NULL
            WHEN NOT e.in_place THEN 'sop_conflict'
        END AS reason,
        CASE
            WHEN e.early_outcome = 'sop_conflict'
                THEN 'the SOP instance is already catalogued with different bytes'
            WHEN e.early_outcome = 'patient_mismatch'
                THEN 'the study is already catalogued, or was received earlier, under another patient ID'
            WHEN e.early_outcome = 'duplicate' THEN NULL
            WHEN f.first_sha256 IS NOT NULL AND f.first_sha256 <> e.sha256
                THEN 'a file with this SOP instance UID and different bytes was received earlier'
            WHEN f.first_sha256 IS NOT NULL
                 AND f.first_key <> (e.received_at, e.source_uri, e.batch_id, e.row_no) THEN NULL
            WHEN NOT e.in_place
                THEN 'the online tier already holds different, uncatalogued bytes for this SOP instance'
        END AS detail
    FROM early e LEFT JOIN sop_first f USING (sop_instance_uid)
)
SELECT * FROM decided_ok
UNION ALL BY NAME
SELECT s.*, CASE s.status WHEN 'rejected' THEN 'quarantined' ELSE 'deferred' END AS outcome
FROM staged s WHERE s.status <> 'ok';
