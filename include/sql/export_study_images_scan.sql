-- pacs export: every image row of the selected studies, by a scan of image (when study_ingest
-- does not account for all of them; see export_study_images_range.sql).
CREATE OR REPLACE TEMP TABLE export_study_images AS
SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, i.sha256, i.size_bytes,
       i.online_uri, i.offline_uri, i.offline_offset, i.offline_length
FROM image i
WHERE i.study_instance_uid IN (SELECT study_instance_uid FROM export_studies);
