-- pacs export (pacs.export.export.select_with): from a selection to its instances and where their
-- copies are, from the live catalogue, in a few small statements. Every query reads a handful of
-- rows: the selected studies through the study table, their images through the row groups of
-- their ingest times (study_ingest, include/sql/schema.sql) rather than a scan of image.

-- name: studies
-- The studies a selection names: $studies (UIDs), $accessions, $patients (effective PatientIDs; a
-- patient merged into another stands for it).
SELECT study_instance_uid, patient_id, accession_number, image_count FROM study
WHERE study_instance_uid IN (SELECT unnest($studies::VARCHAR[]))
   OR accession_number IN (SELECT unnest($accessions::VARCHAR[]))
   OR patient_id IN (SELECT unnest($patients::VARCHAR[]))
   OR patient_id IN (SELECT merged_into FROM patient
                     WHERE patient_id IN (SELECT unnest($patients::VARCHAR[])) AND merged_into IS NOT NULL);

-- name: merged_patients
SELECT patient_id FROM patient WHERE patient_id IN (SELECT unnest($patients::VARCHAR[])) AND merged_into IS NOT NULL;

-- name: ingest_range
SELECT min(ingested_at), max(ingested_at) FROM study_ingest
WHERE study_instance_uid IN (SELECT unnest($studies::VARCHAR[]));

-- name: study_images
-- Every image row of $studies whose ingest time is within [$lo, $hi] (zone maps skip the rest).
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, sha256, size_bytes, online_uri, offline_uri,
       offline_offset, offline_length
FROM image
WHERE ingested_at BETWEEN $lo AND $hi AND study_instance_uid IN (SELECT unnest($studies::VARCHAR[]));

-- name: study_images_scan
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, sha256, size_bytes, online_uri, offline_uri,
       offline_offset, offline_length
FROM image
WHERE study_instance_uid IN (SELECT unnest($studies::VARCHAR[]));

-- name: named_images
-- The image rows of named series and SOP instances (a scan of image: no ingest range is known).
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, sha256, size_bytes, online_uri, offline_uri,
       offline_offset, offline_length
FROM image
WHERE series_instance_uid IN (SELECT unnest($series::VARCHAR[]))
   OR sop_instance_uid IN (SELECT unnest($sops::VARCHAR[]));

-- name: known_series
SELECT series_instance_uid FROM series WHERE series_instance_uid IN (SELECT unnest($series::VARCHAR[]));

-- name: patients_of
SELECT study_instance_uid, patient_id FROM study WHERE study_instance_uid IN (SELECT unnest($studies::VARCHAR[]));

-- name: rejected
SELECT sop_instance_uid FROM rejection WHERE sop_instance_uid IN (SELECT unnest($sops::VARCHAR[]));
