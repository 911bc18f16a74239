-- Decide each staged file's outcome against the catalogue (the merge's only read).
-- Input: `staged` (an Arrow table: one row per landing file of the batches being merged, `_i`
-- its position). "First received wins": within one merge, files are ordered by received_at,
-- then source URI. Output: temp table `decided`, narrow (keys, outcome, reason, detail and the
-- columns the merge updates); everything else stays in the Arrow table, joined by `_i`.
-- Precedence of the outcomes (the first that applies decides):
--   1. duplicate        the SOP instance is catalogued with these very bytes (an identical resend
--                       names the catalogued study and series, so it never conflicts);
--   2. sop_conflict     the SOP instance is catalogued with other bytes;
--   3. patient_mismatch the study is catalogued, or was received earlier, under another patient;
--   4. series_conflict  the series is catalogued, or was received earlier, under another study
--                       (a series belongs to one study; see checks.sql image_study_differs_from_series);
--   5. a later copy of a SOP instance within the merge: duplicate (same bytes) or sop_conflict;
--   6. sop_conflict     the online tier holds other, uncatalogued bytes for the SOP instance.
-- For 4, "received earlier" counts only the files that 1-3 leave in the running (as sop_first
-- does for 5): a file rejected for its SOP instance or its patient does not claim its series, so
-- the series' study is the one its first acceptable file names, as if the files came one at a
-- time. (A later copy of a SOP instance that also names another study of the series is reported
-- as series_conflict rather than sop_conflict; it is quarantined either way.)
-- Identity corrections (include/sql/schema_admin.sql) come first: a file is decided under its
-- effective patient. It names a study the catalogue holds and that study's header patient (a
-- study moved after its modality named the wrong patient): the study's patient now; else it names
-- a merged patient: the patient that one was merged into; else the patient it names.
-- Catalogued images this merge touches (sop_instance_uid, sha256, online_uri), in three steps
-- so that the cost follows the merge, not the catalogue: the SOP instances named by the staged
-- rows (merge_decide_sop.sql) are looked up in the sorted index of image_sop beside the catalogue
-- (pacs.catalogue.sop_index: merge_sop_hits.sql), or when it cannot be had in image_sop itself
-- (merge_sop_scan.sql), giving temp table merge_sop_candidates; then the few candidates are read
-- from image in the row groups of their ingested_at only; a candidate not found so (a hash
-- collision, or an ingested_at that no longer matches) is looked up in all of image, so the result
-- is exact whatever image_sop holds. Each step is free when the one before found nothing. Every
-- staged SOP instance counts (merge_outcomes.sql reads online_uri here).
CREATE OR REPLACE TEMP TABLE merge_known_image AS
SELECT i.sop_instance_uid, i.sha256, i.online_uri FROM image i
WHERE i.ingested_at IN (SELECT ingested_at FROM merge_sop_candidates)
  AND i.sop_instance_uid IN (SELECT sop_instance_uid FROM merge_sop_candidates);

INSERT INTO merge_known_image
SELECT i.sop_instance_uid, i.sha256, i.online_uri FROM image i
SEMI JOIN (SELECT sop_instance_uid FROM merge_sop_candidates ANTI JOIN merge_known_image USING (sop_instance_uid))
    USING (sop_instance_uid);

-- The catalogued studies the staged rows name (one read of study, as before corrections), and
-- the rows whose effective patient is not the one they name: joined on the staged keys only, so
-- both cost what the merge names (merged patients are rare: merged_into is nearly all NULL).
CREATE OR REPLACE TEMP TABLE merge_known_study AS
SELECT st.study_instance_uid, st.patient_id, st.header_patient_id FROM study st
SEMI JOIN staged s USING (study_instance_uid);

CREATE OR REPLACE TEMP TABLE merge_effective_patient AS
SELECT s._i, coalesce(mv.patient_id, mg.merged_into) AS patient_id, s.patient_id AS header_patient_id
FROM staged s
LEFT JOIN merge_known_study mv
    ON mv.study_instance_uid = s.study_instance_uid AND mv.header_patient_id = s.patient_id
LEFT JOIN (SELECT p.patient_id, p.merged_into FROM patient p SEMI JOIN staged s USING (patient_id)
           WHERE p.merged_into IS NOT NULL) mg
    ON mg.patient_id = s.patient_id
WHERE s.status = 'ok' AND coalesce(mv.patient_id, mg.merged_into) IS NOT NULL
  AND coalesce(mv.patient_id, mg.merged_into) <> s.patient_id;

CREATE OR REPLACE TEMP TABLE decided AS
WITH ok AS NOT MATERIALIZED (
    SELECT s._i, s.batch_id, s.row_no, s.source_uri, s.received_at, s.sha256, s.in_place, s.dst_uri,
           s.sop_instance_uid, s.study_instance_uid, s.series_instance_uid,
           coalesce(e.patient_id, s.patient_id) AS patient_id
    FROM staged s LEFT JOIN merge_effective_patient e USING (_i) WHERE s.status = 'ok'
),
-- Only SOP instances / studies / series that occur more than once in this merge need ordering.
multi_sop AS (
    SELECT sop_instance_uid FROM ok GROUP BY sop_instance_uid HAVING count(*) > 1
),
multi_study AS (
    SELECT study_instance_uid FROM ok GROUP BY study_instance_uid HAVING count(DISTINCT patient_id) > 1
),
multi_series AS (  -- min <> max: more than one study, without a distinct set per group
    SELECT series_instance_uid FROM ok GROUP BY series_instance_uid
    HAVING min(study_instance_uid) <> max(study_instance_uid)
),
study_owner AS (
    SELECT o.study_instance_uid, arg_min(o.patient_id, (o.received_at, o.source_uri, o.batch_id, o.row_no)) AS owner_patient_id
    FROM ok o SEMI JOIN multi_study m USING (study_instance_uid)
    GROUP BY o.study_instance_uid
),
known_study AS (
    SELECT study_instance_uid, patient_id FROM merge_known_study
),
known_series AS (
    SELECT se.series_instance_uid, se.study_instance_uid FROM series se SEMI JOIN ok USING (series_instance_uid)
),
-- The first received study of each series named under several studies in this merge, among the
-- files that precedence 1-3 leave in the running (the same tests as `early`, on the few rows of
-- such series only: computed here, `early` stays a projection and is not materialized).
series_owner AS (
    SELECT o.series_instance_uid,
           arg_min(o.study_instance_uid, (o.received_at, o.source_uri, o.batch_id, o.row_no)) AS owner_study_uid
    FROM ok o SEMI JOIN multi_series m USING (series_instance_uid)
    ANTI JOIN merge_known_image i USING (sop_instance_uid)                     -- not 1-2
    LEFT JOIN known_study st USING (study_instance_uid)
    LEFT JOIN study_owner so USING (study_instance_uid)
    WHERE coalesce(st.patient_id, so.owner_patient_id, o.patient_id) = o.patient_id  -- not 3
    GROUP BY o.series_instance_uid
),
known AS (
    SELECT o.*, NULL::VARCHAR AS quarantine_uri, NULL::VARCHAR AS sidecar_uri,
           i.sha256 AS cat_sha256,
           coalesce(st.patient_id, so.owner_patient_id) AS owner_patient_id,
           coalesce(se.study_instance_uid, sw.owner_study_uid) AS owner_study_uid
    FROM ok o
    LEFT JOIN merge_known_image i ON i.sop_instance_uid = o.sop_instance_uid
    LEFT JOIN known_study st ON st.study_instance_uid = o.study_instance_uid
    LEFT JOIN study_owner so ON so.study_instance_uid = o.study_instance_uid
    LEFT JOIN known_series se ON se.series_instance_uid = o.series_instance_uid  -- the catalogue wins
    LEFT JOIN series_owner sw ON sw.series_instance_uid = o.series_instance_uid
),
early AS (  -- precedence 1-4
    SELECT *, CASE
        WHEN cat_sha256 IS NOT NULL AND cat_sha256 = sha256 THEN 'duplicate'
        WHEN cat_sha256 IS NOT NULL THEN 'sop_conflict'
        WHEN owner_patient_id IS NOT NULL AND owner_patient_id <> patient_id THEN 'patient_mismatch'
        WHEN owner_study_uid IS NOT NULL AND owner_study_uid <> study_instance_uid THEN 'series_conflict'
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
    SELECT _i, batch_id, row_no, sop_instance_uid, dst_uri, in_place, quarantine_uri, sidecar_uri,
        CASE
            WHEN early_outcome = 'duplicate' THEN 'duplicate'
            WHEN early_outcome IS NOT NULL THEN 'quarantined'
            WHEN NOT is_first AND first_sha256 = sha256 THEN 'duplicate'
            WHEN NOT is_first THEN 'quarantined'
            WHEN placeable THEN 'catalogued'
            ELSE 'quarantined'
        END AS outcome,
        CASE
            WHEN early_outcome IN ('sop_conflict', 'patient_mismatch', 'series_conflict') THEN early_outcome
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
            WHEN early_outcome = 'series_conflict'
                THEN 'the series is already catalogued, or was received earlier, under another study'
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
SELECT s._i, s.batch_id, s.row_no, s.sop_instance_uid, s.dst_uri, s.in_place, s.quarantine_uri, s.sidecar_uri,
       CASE s.status WHEN 'rejected' THEN 'quarantined' ELSE 'deferred' END AS outcome,
       s.reason, s.detail, false AS replace_dst
FROM staged s WHERE s.status <> 'ok';
