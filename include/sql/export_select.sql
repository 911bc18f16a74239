-- pacs export (pacs.export.export.select_with): the selected studies, from the live catalogue
-- (their images follow in export_study_images_*.sql, the selection in export_selected.sql).
-- Params: $studies, $series, $sops (UIDs), $accessions and $patients (AccessionNumber, effective
-- PatientID). `export_unknown` names the selectors nothing matched.
CREATE OR REPLACE TEMP TABLE export_studies AS
SELECT study_instance_uid FROM study
WHERE study_instance_uid IN (SELECT unnest($studies::VARCHAR[]))
   OR accession_number IN (SELECT unnest($accessions::VARCHAR[]))
   OR patient_id IN (SELECT unnest($patients::VARCHAR[]))
   OR patient_id IN (SELECT merged_into FROM patient  -- a patient merged into another stands for it
                     WHERE patient_id IN (SELECT unnest($patients::VARCHAR[])) AND merged_into IS NOT NULL);

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
