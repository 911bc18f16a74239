-- The ingest merge's aggregates: what its new images add to their series, studies and patients,
-- at the cost of the merge, not of the catalogue (aggregates.sql recomputes them from every
-- image of the touched studies, which is a scan of image). Exact because the merge only inserts
-- images (each once; merge_decide.sql) and only fills gaps in study and series attributes, and
-- the aggregates were exact before (every other writer recomputes them with aggregates.sql;
-- `pacs check` verifies them all). Inputs, from merge_apply.sql: temp tables
-- `merge_series_delta` (per series of the new images, taken before the upserts),
-- `merge_new_studies` (the studies the merge created) and `touched_studies`.
-- The same values as aggregates.sql: counts and sizes of the images, copies by tier (a new
-- image has its online copy), first and last received, the sorted modalities of the series with
-- images, the number of such series, and per patient its studies and their first and last date.
UPDATE series SET
    image_count = series.image_count + d.image_count,
    size_bytes = series.size_bytes + d.size_bytes,
    first_received_at = least(series.first_received_at, d.first_received_at),
    last_received_at = greatest(series.last_received_at, d.last_received_at),
    updated_at = now()
FROM merge_series_delta d
WHERE series.series_instance_uid = d.series_instance_uid;

UPDATE study SET
    series_count = study.series_count + a.new_series,
    image_count = study.image_count + a.image_count,
    size_bytes = study.size_bytes + a.size_bytes,
    online_image_count = study.online_image_count + a.online_image_count,
    modalities_in_study = list_sort(list_distinct(list_concat(coalesce(study.modalities_in_study, []),
                                                              a.modalities))),
    first_received_at = least(study.first_received_at, a.first_received_at),
    last_received_at = greatest(study.last_received_at, a.last_received_at),
    updated_at = now()
FROM (
    SELECT d.study_instance_uid,
           count(*) FILTER (WHERE d.series_was_empty)::INTEGER AS new_series,
           sum(d.image_count) AS image_count,
           sum(d.size_bytes) AS size_bytes,
           sum(d.online_image_count) AS online_image_count,
           list(se.modality) AS modalities,
           min(d.first_received_at) AS first_received_at,
           max(d.last_received_at) AS last_received_at
    FROM merge_series_delta d JOIN series se USING (series_instance_uid)
    GROUP BY d.study_instance_uid
) a
WHERE study.study_instance_uid = a.study_instance_uid;

UPDATE patient SET
    study_count = patient.study_count + a.new_studies,
    first_study_date = least(patient.first_study_date, a.first_study_date),
    last_study_date = greatest(patient.last_study_date, a.last_study_date),
    updated_at = now()
FROM (
    SELECT st.patient_id, count(n.study_instance_uid)::INTEGER AS new_studies,
           min(st.study_date) AS first_study_date, max(st.study_date) AS last_study_date
    FROM study st
    SEMI JOIN touched_studies t USING (study_instance_uid)
    LEFT JOIN merge_new_studies n USING (study_instance_uid)
    GROUP BY st.patient_id
) a
WHERE patient.patient_id = a.patient_id;
