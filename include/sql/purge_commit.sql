-- Commit a purge (pacs.admin.purge.execute), in one transaction, after every copy of the
-- instances in temp table `purge_deleted(sop_instance_uid)` was deleted and found gone: an audit
-- row per deleted copy, the image rows (with their departmental rows) and the series and studies
-- left empty removed (and recorded for the snapshot), the aggregates of what is left, the plan's
-- rows marked.
INSERT INTO deletion (sop_instance_uid, series_instance_uid, study_instance_uid, sha256, size_bytes, tier, uri,
                      why, plan_id, deleted_at, run_id)
SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, i.sha256, i.size_bytes, c.tier, c.uri,
       p.why, $plan_id, $now, $run_id
FROM image i
JOIN purge_plan p ON p.plan_id = $plan_id AND p.sop_instance_uid = i.sop_instance_uid
CROSS JOIN LATERAL (SELECT 'online' AS tier, i.online_uri AS uri WHERE i.online_uri IS NOT NULL
                    UNION ALL
                    SELECT 'offline', i.offline_uri WHERE i.offline_uri IS NOT NULL) c
WHERE i.sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);

CREATE OR REPLACE TEMP TABLE touched_studies AS
SELECT DISTINCT study_instance_uid FROM image WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);

INSERT INTO snapshot_removed
SELECT 'image', sop_instance_uid, study_instance_uid, $now FROM image
WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);

DELETE FROM image WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);

-- Their departmental rows (schema_departmental.sql) go with them, recorded for the snapshot too
-- (one row per image in each table; a dose report's events are recorded once per instance).
INSERT INTO snapshot_removed
SELECT kind, sop_instance_uid, study_instance_uid, $now FROM (
    SELECT 'ct_acquisition' AS kind, sop_instance_uid, study_instance_uid FROM ct_acquisition
    UNION ALL SELECT 'mr_acquisition', sop_instance_uid, study_instance_uid FROM mr_acquisition
    UNION ALL SELECT 'dx_exposure', sop_instance_uid, study_instance_uid FROM dx_exposure
    UNION ALL SELECT 'us_acquisition', sop_instance_uid, study_instance_uid FROM us_acquisition
    UNION ALL SELECT 'dose_report', sop_instance_uid, study_instance_uid FROM dose_report
    UNION ALL SELECT DISTINCT 'dose_event', sop_instance_uid, study_instance_uid FROM dose_event
) departmental
WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);

DELETE FROM ct_acquisition WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);
DELETE FROM mr_acquisition WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);
DELETE FROM dx_exposure WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);
DELETE FROM us_acquisition WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);
DELETE FROM dose_report WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);
DELETE FROM dose_event WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);

CREATE OR REPLACE TEMP TABLE purge_empty_series AS
SELECT se.series_instance_uid, se.study_instance_uid FROM series se
SEMI JOIN touched_studies t USING (study_instance_uid)
ANTI JOIN image i USING (series_instance_uid);

INSERT INTO snapshot_removed
SELECT 'series', series_instance_uid, study_instance_uid, $now FROM purge_empty_series;

DELETE FROM series WHERE series_instance_uid IN (SELECT series_instance_uid FROM purge_empty_series);

CREATE OR REPLACE TEMP TABLE purge_empty_studies AS
SELECT st.study_instance_uid, st.patient_id FROM study st
SEMI JOIN touched_studies t USING (study_instance_uid)
ANTI JOIN series se USING (study_instance_uid);

INSERT INTO snapshot_removed
SELECT 'study', study_instance_uid, study_instance_uid, $now FROM purge_empty_studies;

DELETE FROM study WHERE study_instance_uid IN (SELECT study_instance_uid FROM purge_empty_studies);

-- The patients of the studies that went (aggregates.sql reaches patients through studies that
-- still exist): their counts and dates from what is left, none when no study is left.
UPDATE patient SET
    study_count = coalesce(a.study_count, 0),
    first_study_date = a.first_study_date,
    last_study_date = a.last_study_date,
    updated_at = now()
FROM (SELECT e.patient_id, count(st.study_instance_uid)::INTEGER AS study_count,
             min(st.study_date) AS first_study_date, max(st.study_date) AS last_study_date
      FROM (SELECT DISTINCT patient_id FROM purge_empty_studies) e
      LEFT JOIN study st USING (patient_id)
      GROUP BY e.patient_id) a
WHERE patient.patient_id = a.patient_id;

UPDATE purge_plan SET state = 'deleted'
WHERE plan_id = $plan_id AND sop_instance_uid IN (SELECT sop_instance_uid FROM purge_deleted);
