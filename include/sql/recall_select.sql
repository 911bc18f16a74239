-- The studies a recall asks for: by study UIDs, patient ID or accession number.
SELECT s.study_instance_uid
FROM study s
WHERE s.study_instance_uid IN (SELECT unnest($study_uids::VARCHAR[]))
   OR ($patient_id IS NOT NULL AND s.patient_id = $patient_id)
   OR ($accession_number IS NOT NULL AND s.accession_number = $accession_number)
ORDER BY s.study_instance_uid
