-- pacs export (pacs.export.export.select): the instances of a selection and where their copies
-- are, from the live catalogue. Params: $studies, $series, $sops (UIDs), $accessions and
-- $patients (AccessionNumber, effective PatientID); the union of all of them. Rejected instances
-- are left out, as in the analysts' views. `export_unknown` names selectors nothing matched.
CREATE OR REPLACE TEMP TABLE export_studies AS
SELECT study_instance_uid FROM study
WHERE study_instance_uid IN (SELECT unnest($studies::VARCHAR[]))
   OR accession_number IN (SELECT unnest($accessions::VARCHAR[]))
   OR patient_id IN (SELECT unnest($patients::VARCHAR[]))
   OR patient_id IN (SELECT merged_into FROM patient  -- a patient merged into another stands for it
                     WHERE patient_id IN (SELECT unnest($patients::VARCHAR[])) AND merged_into IS NOT NULL);

CREATE OR REPLACE TEMP TABLE export_selected AS
SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, st.patient_id, i.sha256, i.size_bytes,
       i.online_uri, i.offline_uri, i.offline_offset, i.offline_length
FROM image i JOIN study st USING (study_instance_uid)
WHERE (i.study_instance_uid IN (SELECT study_instance_uid FROM export_studies)
       OR i.series_instance_uid IN (SELECT unnest($series::VARCHAR[]))
       OR i.sop_instance_uid IN (SELECT unnest($sops::VARCHAR[])))
  AND i.sop_instance_uid NOT IN (SELECT sop_instance_uid FROM rejection);

CREATE OR REPLACE TEMP TABLE export_unknown AS
SELECT 'StudyInstanceUID' AS kind, v AS value FROM (SELECT unnest($studies::VARCHAR[]) AS v)
WHERE v NOT IN (SELECT study_instance_uid FROM study)
UNION ALL
SELECT 'AccessionNumber', v FROM (SELECT unnest($accessions::VARCHAR[]) AS v)
WHERE v NOT IN (SELECT accession_number FROM study WHERE accession_number IS NOT NULL)
UNION ALL
SELECT 'PatientID', v FROM (SELECT unnest($patients::VARCHAR[]) AS v)
WHERE v NOT IN (SELECT patient_id FROM study) AND v NOT IN (SELECT patient_id FROM patient WHERE merged_into IS NOT NULL)
UNION ALL
SELECT 'SeriesInstanceUID', v FROM (SELECT unnest($series::VARCHAR[]) AS v)
WHERE v NOT IN (SELECT series_instance_uid FROM series)
UNION ALL
SELECT 'SOPInstanceUID', v FROM (SELECT unnest($sops::VARCHAR[]) AS v)
WHERE v NOT IN (SELECT sop_instance_uid FROM image);
