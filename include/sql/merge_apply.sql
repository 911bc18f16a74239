-- Apply the decisions to the catalogue, inside the merge's single transaction. Inputs: the
-- Arrow tables `staged` and `new_images` (the staged rows decided 'catalogued') and temp table
-- `decided`; $now is the merge time (created_at, ingested_at), $run_id the Airflow run; updated_at
-- is now(), this transaction's start, which the snapshot refresh reads changes by.
-- What the new images add to the aggregates (include/sql/merge_aggregates.sql), taken before
-- the upserts: per series, and whether the series held images and the study existed before.
CREATE OR REPLACE TEMP TABLE merge_series_delta AS
SELECT n.series_instance_uid, any_value(n.study_instance_uid) AS study_instance_uid,
       count(*) AS image_count, sum(n.size_bytes) AS size_bytes,
       count(*) FILTER (WHERE n.dst_uri IS NOT NULL) AS online_image_count,
       min(n.received_at) AS first_received_at, max(n.received_at) AS last_received_at,
       coalesce(any_value(se.image_count), 0) = 0 AS series_was_empty
FROM new_images n LEFT JOIN series se USING (series_instance_uid)
GROUP BY n.series_instance_uid;

CREATE OR REPLACE TEMP TABLE merge_new_studies AS
SELECT DISTINCT study_instance_uid FROM new_images ANTI JOIN study USING (study_instance_uid);

-- Patient demographics: the most recently received non-empty value wins.
INSERT INTO patient (patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex,
                     study_count, created_at, updated_at)
SELECT patient_id,
       arg_max(issuer_of_patient_id, received_at) FILTER (WHERE issuer_of_patient_id IS NOT NULL),
       arg_max(patient_name, received_at) FILTER (WHERE patient_name IS NOT NULL),
       arg_max(patient_birth_date, received_at) FILTER (WHERE patient_birth_date IS NOT NULL),
       arg_max(patient_sex, received_at) FILTER (WHERE patient_sex IS NOT NULL),
       0, $now, now()
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
       $now, now()
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

-- A new study filed under the patient its header's patient was merged into (merge_decide.sql)
-- keeps the header's patient, as a corrected study does; a few rows, joined on this merge's keys.
UPDATE study SET header_patient_id = h.header_patient_id, updated_at = now()
FROM (SELECT n.study_instance_uid, arg_min(e.header_patient_id, n.received_at) AS header_patient_id
      FROM merge_effective_patient e JOIN new_images n USING (_i)
      SEMI JOIN merge_new_studies m ON m.study_instance_uid = n.study_instance_uid
      GROUP BY n.study_instance_uid) h
WHERE study.study_instance_uid = h.study_instance_uid AND study.header_patient_id IS NULL;

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
       $now, now()
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
       batch_id, now()
FROM new_images;

-- The studies' lookup by ingest time (include/sql/schema.sql): one row per study of this merge.
INSERT INTO study_ingest SELECT DISTINCT study_instance_uid, $now FROM new_images;

-- Their rows of the SOP-instance lookup (include/sql/schema.sql): ingested_at as in image above.
INSERT INTO image_sop SELECT (md5_number(sop_instance_uid) >> 64)::UBIGINT, $now FROM new_images;

-- image_sop changed in this transaction: a new token, so that its sorted index beside the
-- catalogue (pacs.catalogue.sop_index) is trusted only once it was updated after this commit.
INSERT INTO catalogue_meta VALUES ('image_sop_token', $sop_token)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

INSERT INTO quarantine (quarantine_id, batch_id, source_uri, quarantine_uri, sidecar_uri, reason, detail,
                        sha256, size_bytes, sop_instance_uid, study_instance_uid, quarantined_at)
SELECT d.batch_id || ':' || d.row_no, d.batch_id, s.source_uri, d.quarantine_uri, d.sidecar_uri, d.reason,
       d.detail, s.sha256, s.size_bytes, s.sop_instance_uid, s.study_instance_uid, $now
FROM decided d JOIN staged s USING (_i)
WHERE d.outcome = 'quarantined'
ON CONFLICT (quarantine_id) DO NOTHING;

-- Aggregates of every touched study, its series and patient (include/sql/merge_aggregates.sql).
CREATE OR REPLACE TEMP TABLE touched_studies AS
SELECT DISTINCT study_instance_uid FROM new_images;

INSERT INTO ingest_batch (batch_id, run_id, files, catalogued, duplicates, quarantined, deferred, bytes, merged_at)
SELECT d.batch_id, $run_id, count(*),
       count(*) FILTER (WHERE d.outcome = 'catalogued'),
       count(*) FILTER (WHERE d.outcome = 'duplicate'),
       count(*) FILTER (WHERE d.outcome = 'quarantined'),
       count(*) FILTER (WHERE d.outcome = 'deferred'),
       coalesce(any_value(b.bytes), 0),
       $now
FROM decided d
LEFT JOIN (SELECT batch_id, sum(size_bytes) AS bytes FROM new_images GROUP BY batch_id) b USING (batch_id)
GROUP BY d.batch_id;
