-- Apply the decisions in temp table `decided` to the catalogue. Runs inside the merge's
-- single transaction; $now is the merge time, $run_id the Airflow run.
CREATE OR REPLACE TEMP TABLE new_images AS
SELECT * FROM decided WHERE outcome = 'catalogued';

-- Patient demographics: the most recently received non-empty value wins.
INSERT INTO patient (patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex,
                     study_count, created_at, updated_at)
SELECT patient_id,
       arg_max(issuer_of_patient_id, received_at) FILTER (WHERE issuer_of_patient_id IS NOT NULL),
       arg_max(patient_name, received_at) FILTER (WHERE patient_name IS NOT NULL),
       arg_max(patient_birth_date, received_at) FILTER (WHERE patient_birth_date IS NOT NULL),
       arg_max(patient_sex, received_at) FILTER (WHERE patient_sex IS NOT NULL),
       0, $now, $now
FROM new_images
GROUP BY patient_id
ON CONFLICT (patient_id) DO UPDATE SET
    issuer_of_patient_id = coalesce(excluded.issuer_of_patient_id, issuer_of_patient_id),
    patient_name = coalesce(excluded.patient_name, patient_name),
    patient_birth_date = coalesce(excluded.patient_birth_date, patient_birth_date),
    patient_sex = coalesce(excluded.patient_sex, patient_sex),
    updated_at = excluded.updated_at;

-- Study and series attributes: the first received file describes them; later files only fill gaps.
INSERT INTO study (study_instance_uid, patient_id, study_date, study_time, accession_number, study_id,
                   study_description, referring_physician_name, institution_name, patient_age,
                   created_at, updated_at)
SELECT study_instance_uid,
       arg_min(patient_id, received_at),
       arg_min(study_date, received_at) FILTER (WHERE study_date IS NOT NULL),
       arg_min(study_time, received_at) FILTER (WHERE study_time IS NOT NULL),
       arg_min(accession_number, received_at) FILTER (WHERE accession_number IS NOT NULL),
       arg_min(study_id, received_at) FILTER (WHERE study_id IS NOT NULL),
       arg_min(study_description, received_at) FILTER (WHERE study_description IS NOT NULL),
       arg_min(referring_physician_name, received_at) FILTER (WHERE referring_physician_name IS NOT NULL),
       arg_min(institution_name, received_at) FILTER (WHERE institution_name IS NOT NULL),
       arg_min(patient_age, received_at) FILTER (WHERE patient_age IS NOT NULL),
       $now, $now
FROM new_images
GROUP BY study_instance_uid
ON CONFLICT (study_instance_uid) DO UPDATE SET
    study_date = coalesce(study_date, excluded.study_date),
    study_time = coalesce(study_time, excluded.study_time),
    accession_number = coalesce(accession_number, excluded.accession_number),
    study_id = coalesce(study_id, excluded.study_id),
    study_description = coalesce(study_description, excluded.study_description),
    referring_physician_name = coalesce(referring_physician_name, excluded.referring_physician_name),
    institution_name = coalesce(institution_name, excluded.institution_name),
    patient_age = coalesce(patient_age, excluded.patient_age),
    updated_at = excluded.updated_at;

INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number, series_description,
                    series_date, body_part_examined, manufacturer, manufacturer_model_name, station_name,
                    created_at, updated_at)
SELECT series_instance_uid,
       arg_min(study_instance_uid, received_at),
       arg_min(modality, received_at),
       arg_min(series_number, received_at) FILTER (WHERE series_number IS NOT NULL),
       arg_min(series_description, received_at) FILTER (WHERE series_description IS NOT NULL),
       arg_min(series_date, received_at) FILTER (WHERE series_date IS NOT NULL),
       arg_min(body_part_examined, received_at) FILTER (WHERE body_part_examined IS NOT NULL),
       arg_min(manufacturer, received_at) FILTER (WHERE manufacturer IS NOT NULL),
       arg_min(manufacturer_model_name, received_at) FILTER (WHERE manufacturer_model_name IS NOT NULL),
       arg_min(station_name, received_at) FILTER (WHERE station_name IS NOT NULL),
       $now, $now
FROM new_images
GROUP BY series_instance_uid
ON CONFLICT (series_instance_uid) DO UPDATE SET
    series_number = coalesce(series_number, excluded.series_number),
    series_description = coalesce(series_description, excluded.series_description),
    series_date = coalesce(series_date, excluded.series_date),
    body_part_examined = coalesce(body_part_examined, excluded.body_part_examined),
    manufacturer = coalesce(manufacturer, excluded.manufacturer),
    manufacturer_model_name = coalesce(manufacturer_model_name, excluded.manufacturer_model_name),
    station_name = coalesce(station_name, excluded.station_name),
    updated_at = excluded.updated_at;

INSERT INTO image (sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, instance_number,
                   content_date, transfer_syntax_uid, rows, columns, number_of_frames, bits_allocated,
                   sha256, size_bytes, tier, uri, online_uri, online_verified_at, received_at, ingested_at,
                   batch_id, updated_at)
SELECT sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, instance_number,
       content_date, transfer_syntax_uid, rows, columns, number_of_frames, bits_allocated,
       sha256, size_bytes, 'online', dst_uri, dst_uri, $now, received_at, $now,
       batch_id, $now
FROM new_images;

INSERT INTO quarantine (quarantine_id, batch_id, source_uri, quarantine_uri, sidecar_uri, reason, detail,
                        sha256, size_bytes, sop_instance_uid, study_instance_uid, quarantined_at)
SELECT batch_id || ':' || row_no, batch_id, source_uri, quarantine_uri, sidecar_uri, reason, detail,
       sha256, size_bytes, sop_instance_uid, study_instance_uid, $now
FROM decided
WHERE outcome = 'quarantined'
ON CONFLICT (quarantine_id) DO NOTHING;

-- Aggregates are recomputed from the images of every touched study, so they stay exact
-- whatever the order, repetition or partiality of the sends.
CREATE OR REPLACE TEMP TABLE touched_series_stats AS
SELECT i.study_instance_uid, i.series_instance_uid,
       count(*) AS image_count,
       sum(i.size_bytes) AS size_bytes,
       count(*) FILTER (WHERE i.online_uri IS NOT NULL) AS online_image_count,
       count(*) FILTER (WHERE i.offline_uri IS NOT NULL) AS offline_image_count,
       min(i.received_at) AS first_received_at,
       max(i.received_at) AS last_received_at
FROM image i
SEMI JOIN (SELECT DISTINCT study_instance_uid FROM new_images) t USING (study_instance_uid)
GROUP BY ALL;

UPDATE series SET
    image_count = a.image_count,
    size_bytes = a.size_bytes,
    first_received_at = a.first_received_at,
    last_received_at = a.last_received_at,
    updated_at = $now
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
    updated_at = $now
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
    updated_at = $now
FROM (
    SELECT st.patient_id, count(*)::INTEGER AS study_count,
           min(st.study_date) AS first_study_date, max(st.study_date) AS last_study_date
    FROM study st
    SEMI JOIN (SELECT DISTINCT patient_id FROM new_images) p USING (patient_id)
    GROUP BY st.patient_id
) a
WHERE patient.patient_id = a.patient_id;

INSERT INTO ingest_batch (batch_id, run_id, files, catalogued, duplicates, quarantined, deferred, bytes, merged_at)
SELECT batch_id, $run_id, count(*),
       count(*) FILTER (WHERE outcome = 'catalogued'),
       count(*) FILTER (WHERE outcome = 'duplicate'),
       count(*) FILTER (WHERE outcome = 'quarantined'),
       count(*) FILTER (WHERE outcome = 'deferred'),
       coalesce(sum(size_bytes) FILTER (WHERE outcome = 'catalogued'), 0),
       $now
FROM decided
GROUP BY batch_id;
