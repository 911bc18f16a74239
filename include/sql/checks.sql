-- Invariant checks of the catalogue (`pacs check`, tests). Each query counts violations.

-- name: duplicate_sop_instances
SELECT count(*) FROM (SELECT sop_instance_uid FROM image GROUP BY 1 HAVING count(*) > 1);

-- name: images_without_series
SELECT count(*) FROM image i ANTI JOIN series s USING (series_instance_uid);

-- name: series_without_study
SELECT count(*) FROM series s ANTI JOIN study st USING (study_instance_uid);

-- name: studies_without_patient
SELECT count(*) FROM study st ANTI JOIN patient p USING (patient_id);

-- name: image_study_differs_from_series
SELECT count(*) FROM image i JOIN series s USING (series_instance_uid)
WHERE i.study_instance_uid <> s.study_instance_uid;

-- name: series_aggregates_wrong
SELECT count(*) FROM series s
LEFT JOIN (SELECT series_instance_uid, count(*) AS n, sum(size_bytes) AS b FROM image GROUP BY 1) a
    USING (series_instance_uid)
WHERE s.image_count <> coalesce(a.n, 0) OR s.size_bytes <> coalesce(a.b, 0);

-- name: study_aggregates_wrong
SELECT count(*) FROM study st
LEFT JOIN (
    SELECT study_instance_uid, count(DISTINCT series_instance_uid) AS series_n, count(*) AS n, sum(size_bytes) AS b,
           count(*) FILTER (WHERE online_uri IS NOT NULL) AS online_n,
           count(*) FILTER (WHERE offline_uri IS NOT NULL) AS offline_n
    FROM image GROUP BY 1
) a USING (study_instance_uid)
WHERE st.image_count <> coalesce(a.n, 0) OR st.size_bytes <> coalesce(a.b, 0)
   OR st.series_count <> coalesce(a.series_n, 0)
   OR st.online_image_count <> coalesce(a.online_n, 0) OR st.offline_image_count <> coalesce(a.offline_n, 0);

-- name: patient_study_counts_wrong
SELECT count(*) FROM patient p
LEFT JOIN (SELECT patient_id, count(*) AS n FROM study GROUP BY 1) a USING (patient_id)
WHERE p.study_count <> coalesce(a.n, 0);

-- name: image_tier_without_copy
SELECT count(*) FROM image
WHERE (tier = 'online' AND (online_uri IS NULL OR uri <> online_uri))
   OR (tier = 'offline' AND (offline_uri IS NULL OR online_uri IS NOT NULL))
   OR tier NOT IN ('online', 'offline');

-- The merge's SOP-instance lookup covers every image (include/sql/schema.sql).
-- name: images_missing_from_image_sop
SELECT count(*) FROM image i
ANTI JOIN image_sop k ON k.sop_hash = (md5_number(i.sop_instance_uid) >> 64)::UBIGINT;

-- The studies' lookup by ingest time covers every image (include/sql/schema.sql).
-- name: images_missing_from_study_ingest
SELECT count(*) FROM image i
ANTI JOIN study_ingest k ON k.study_instance_uid = i.study_instance_uid AND k.ingested_at = i.ingested_at;

-- Identity corrections (include/sql/schema_admin.sql): a merged patient holds no study, and is
-- merged into a patient that exists and is not merged itself (one hop).
-- name: studies_under_merged_patient
SELECT count(*) FROM study st JOIN patient p USING (patient_id) WHERE p.merged_into IS NOT NULL;

-- name: patients_merged_into_no_patient
SELECT count(*) FROM patient p
LEFT JOIN patient t ON t.patient_id = p.merged_into
WHERE p.merged_into IS NOT NULL AND (t.patient_id IS NULL OR t.merged_into IS NOT NULL OR p.merged_into = p.patient_id);

-- Every correction names a study the catalogue holds (or held: a study purged whole has its
-- audit rows in deletion) and patients it holds, and a study's correction left the study under the
-- patient a correction moved it to.
-- name: corrections_without_study
SELECT count(*) FROM correction c
WHERE c.study_instance_uid IS NOT NULL AND c.study_instance_uid NOT IN (SELECT study_instance_uid FROM study)
  AND c.study_instance_uid NOT IN (SELECT study_instance_uid FROM deletion);

-- name: corrections_without_patient
SELECT count(*) FROM correction c
WHERE c.from_patient_id NOT IN (SELECT patient_id FROM patient) OR c.to_patient_id NOT IN (SELECT patient_id FROM patient);

-- name: corrected_study_without_header_patient
SELECT count(*) FROM study st
WHERE st.header_patient_id IS NULL
  AND st.study_instance_uid IN (SELECT study_instance_uid FROM correction WHERE study_instance_uid IS NOT NULL);

-- Rejections (include/sql/schema_admin.sql, pacs.admin.rejection, KOS rejection notes): one row
-- per SOP instance, with one of the four IOCM codes and its meaning, a known source; a KOS
-- rejection names its note, which is catalogued (or was purged: a row of deletion); and a
-- rejection whose instance is catalogued agrees with it on the series and study.
-- name: duplicate_rejections
SELECT count(*) FROM (SELECT sop_instance_uid FROM rejection GROUP BY 1 HAVING count(*) > 1);

-- name: rejections_with_unknown_code
SELECT count(*) FROM rejection
WHERE (code, meaning) NOT IN (VALUES ('113001', 'Rejected for Quality Reasons'),
                                     ('113037', 'Rejected for Patient Safety Reasons'),
                                     ('113038', 'Incorrect Modality Worklist Entry'),
                                     ('113039', 'Data Retention Policy Expired'))
   OR source NOT IN ('cli', 'kos');

-- name: kos_rejections_without_catalogued_note
SELECT count(*) FROM rejection r
WHERE r.source = 'kos'
  AND (r.note_sop_instance_uid IS NULL
       OR (r.note_sop_instance_uid NOT IN (SELECT sop_instance_uid FROM image)
           AND r.note_sop_instance_uid NOT IN (SELECT sop_instance_uid FROM deletion)));

-- name: rejections_disagreeing_with_catalogue
SELECT count(*) FROM rejection r
JOIN image i USING (sop_instance_uid)
WHERE r.series_instance_uid IS DISTINCT FROM i.series_instance_uid
   OR r.study_instance_uid IS DISTINCT FROM i.study_instance_uid;

-- Deletions (include/sql/schema_admin.sql, pacs.admin.purge): an instance with an audit row is
-- no longer catalogued (unless it was sent again after the purge), every audit row names a plan
-- that is done, and every deleted plan row has its audit rows.
-- name: deleted_instances_still_catalogued
SELECT count(*) FROM deletion d
JOIN image i USING (sop_instance_uid)
WHERE i.ingested_at <= d.deleted_at;

-- name: deletions_without_a_done_plan
SELECT count(*) FROM deletion d
WHERE d.plan_id NOT IN (SELECT plan_id FROM purge_run WHERE state = 'done');

-- name: deleted_plan_rows_without_audit
SELECT count(*) FROM purge_plan p
WHERE p.state = 'deleted'
  AND p.sop_instance_uid NOT IN (SELECT sop_instance_uid FROM deletion WHERE plan_id = p.plan_id);

-- Departmental rows (include/sql/schema_departmental.sql): every row belongs to a catalogued
-- image of the same series and study (a purge deletes them with it), in the table of that
-- image's modality; one row per image (per dose report and ordinal for events); every event
-- belongs to a dose report whose event count is its number of events.
-- name: departmental_rows_without_image
SELECT count(*) FROM (
    SELECT sop_instance_uid, series_instance_uid, study_instance_uid FROM ct_acquisition
    UNION ALL SELECT sop_instance_uid, series_instance_uid, study_instance_uid FROM mr_acquisition
    UNION ALL SELECT sop_instance_uid, series_instance_uid, study_instance_uid FROM dx_exposure
    UNION ALL SELECT sop_instance_uid, series_instance_uid, study_instance_uid FROM us_acquisition
    UNION ALL SELECT sop_instance_uid, series_instance_uid, study_instance_uid FROM dose_report
    UNION ALL SELECT sop_instance_uid, series_instance_uid, study_instance_uid FROM dose_event
) d
ANTI JOIN image i ON i.sop_instance_uid = d.sop_instance_uid AND i.series_instance_uid = d.series_instance_uid
                 AND i.study_instance_uid = d.study_instance_uid;

-- name: departmental_rows_of_another_modality
SELECT count(*) FROM (
    SELECT series_instance_uid, ['CT'] AS modalities FROM ct_acquisition
    UNION ALL SELECT series_instance_uid, ['MR'] FROM mr_acquisition
    UNION ALL SELECT series_instance_uid, ['CR', 'DX', 'MG'] FROM dx_exposure
    UNION ALL SELECT series_instance_uid, ['US'] FROM us_acquisition
) d
JOIN series se USING (series_instance_uid)
WHERE NOT list_contains(d.modalities, se.modality);

-- name: duplicate_departmental_rows
SELECT count(*) FROM (SELECT tbl, sop_instance_uid, ordinal FROM (
    SELECT 'ct_acquisition', sop_instance_uid, 0 FROM ct_acquisition
    UNION ALL SELECT 'mr_acquisition', sop_instance_uid, 0 FROM mr_acquisition
    UNION ALL SELECT 'dx_exposure', sop_instance_uid, 0 FROM dx_exposure
    UNION ALL SELECT 'us_acquisition', sop_instance_uid, 0 FROM us_acquisition
    UNION ALL SELECT 'dose_report', sop_instance_uid, 0 FROM dose_report
    UNION ALL SELECT 'dose_event', sop_instance_uid, event_ordinal FROM dose_event
) d (tbl, sop_instance_uid, ordinal)
GROUP BY ALL HAVING count(*) > 1);

-- name: dose_events_without_report
SELECT count(*) FROM dose_event e ANTI JOIN dose_report r USING (sop_instance_uid);

-- name: dose_report_event_count_wrong
SELECT count(*) FROM dose_report r
LEFT JOIN (SELECT sop_instance_uid, count(*) AS n FROM dose_event GROUP BY 1) e USING (sop_instance_uid)
WHERE r.event_count <> coalesce(e.n, 0);
