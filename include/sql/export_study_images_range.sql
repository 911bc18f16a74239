-- pacs export: every image row of the selected studies (export_studies), read in the row groups
-- of their ingest times only ($lo, $hi: the range of their study_ingest rows). Image rows are
-- appended in merge order, so DuckDB's zone maps on ingested_at skip every other row group: the
-- lookup costs the study, not the catalogue. The caller checks the count against the studies'
-- image_count and falls back to export_study_images_scan.sql when they differ.
CREATE OR REPLACE TEMP TABLE export_study_images AS
SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, i.sha256, i.size_bytes,
       i.online_uri, i.offline_uri, i.offline_offset, i.offline_length
FROM image i
WHERE i.ingested_at BETWEEN $lo AND $hi
  AND i.study_instance_uid IN (SELECT study_instance_uid FROM export_studies);
