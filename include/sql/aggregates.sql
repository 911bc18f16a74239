-- Recompute the aggregates of the studies in temp table `touched_studies` (and of their series
-- and patients) from the image table, so they stay exact whatever the order, repetition or
-- partiality of sends and tier moves. Used by the ingest merge and the lifecycle steps.
CREATE OR REPLACE TEMP TABLE touched_series_stats AS
SELECT i.study_instance_uid, i.series_instance_uid,
       count(*) AS image_count,
       sum(i.size_bytes) AS size_bytes,
       count(*) FILTER (WHERE i.online_uri IS NOT NULL) AS online_image_count,
       count(*) FILTER (WHERE i.offline_uri IS NOT NULL) AS offline_image_count,
       min(i.received_at) AS first_received_at,
       max(i.received_at) AS last_received_at
FROM image i
SEMI JOIN touched_studies t USING (study_instance_uid)
GROUP BY ALL;

UPDATE series SET
    image_count = a.image_count,
    size_bytes = a.size_bytes,
    first_received_at = a.first_received_at,
    last_received_at = a.last_received_at,
    updated_at = now()
FROM touched_series_stats a
WHERE series.series_instance_uid = a.series_instance_uid
  AND (series.image_count <> a.image_count OR series.size_bytes <> a.size_bytes
       OR series.first_received_at IS DISTINCT FROM a.first_received_at
       OR series.last_received_at IS DISTINCT FROM a.last_received_at);

UPDATE study SET
    series_count = a.series_count,
    image_count = a.image_count,
    size_bytes = a.size_bytes,
    online_image_count = a.online_image_count,
    offline_image_count = a.offline_image_count,
    modalities_in_study = a.modalities_in_study,
    first_received_at = a.first_received_at,
    last_received_at = a.last_received_at,
    updated_at = now()
FROM (
    SELECT s.study_instance_uid,
           count(*)::INTEGER AS series_count,
           sum(s.image_count) AS image_count,
           sum(s.size_bytes) AS size_bytes,
           sum(s.online_image_count) AS online_image_count,
           sum(s.offline_image_count) AS offline_image_count,
           list_sort(list_distinct(list(se.modality))) AS modalities_in_study,
           min(s.first_received_at) AS first_received_at,
           max(s.last_received_at) AS last_received_at
    FROM touched_series_stats s JOIN series se USING (series_instance_uid)
    GROUP BY s.study_instance_uid
) a
WHERE study.study_instance_uid = a.study_instance_uid;

UPDATE patient SET
    study_count = a.study_count,
    first_study_date = a.first_study_date,
    last_study_date = a.last_study_date,
    updated_at = now()
FROM (
    SELECT st.patient_id, count(*)::INTEGER AS study_count,
           min(st.study_date) AS first_study_date, max(st.study_date) AS last_study_date
    FROM study st
    SEMI JOIN (SELECT DISTINCT st2.patient_id FROM study st2
               SEMI JOIN touched_studies t USING (study_instance_uid)) p USING (patient_id)
    GROUP BY st.patient_id
) a
WHERE patient.patient_id = a.patient_id;

