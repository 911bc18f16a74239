-- pacs rebuild: patient, study, series and image rows from temp table `rebuilt` (one row per SOP
-- instance; include/sql/rebuild_images.sql) into an empty catalogue, by the intake's rules
-- (include/sql/merge_apply.sql): a patient's demographics are the most recently received
-- non-empty values, a study's and a series' attributes the first received file's, gaps filled
-- by later files. Aggregates and tier states follow (rebuild_finish.sql).
INSERT INTO patient (patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex,
                     study_count, created_at, updated_at)
SELECT patient_id,
       arg_max(issuer_of_patient_id, received_at) FILTER (WHERE issuer_of_patient_id IS NOT NULL),
       arg_max(patient_name, received_at) FILTER (WHERE patient_name IS NOT NULL),
       arg_max(patient_birth_date, received_at) FILTER (WHERE patient_birth_date IS NOT NULL),
       arg_max(patient_sex, received_at) FILTER (WHERE patient_sex IS NOT NULL),
       0, min(ingested_at), now()
FROM rebuilt
GROUP BY patient_id;

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
       min(ingested_at), now()
FROM rebuilt
GROUP BY study_instance_uid;

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
       min(ingested_at), now()
FROM rebuilt
GROUP BY series_instance_uid;

INSERT INTO image (sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, instance_number,
                   content_date, transfer_syntax_uid, rows, columns, number_of_frames, bits_allocated,
                   sha256, size_bytes, tier, uri, online_uri, online_verified_at, offline_uri, offline_offset,
                   offline_length, offline_verified_at, received_at, ingested_at, batch_id, updated_at)
SELECT sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, instance_number,
       content_date, transfer_syntax_uid, rows, columns, number_of_frames, bits_allocated,
       sha256, size_bytes,
       CASE WHEN online_uri IS NOT NULL THEN 'online' ELSE 'offline' END,
       coalesce(online_uri, offline_uri), online_uri, online_verified_at, offline_uri, offline_offset,
       offline_length, offline_verified_at, received_at, ingested_at, batch_id, now()
FROM rebuilt
ORDER BY ingested_at, sop_instance_uid;

INSERT INTO study_ingest SELECT DISTINCT study_instance_uid, ingested_at FROM image;

INSERT INTO image_sop SELECT (md5_number(sop_instance_uid) >> 64)::UBIGINT, ingested_at FROM image;
