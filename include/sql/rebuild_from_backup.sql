-- pacs rebuild with a backup (attached as `bk`), after the history tables were copied whole
-- (pacs.catalogue.rebuild.FROM_BACKUP): what no file holds of the rows the files rebuilt.

-- Identity corrections: a corrected study keeps its effective patient and its header's patient;
-- patients merged into another stay merged (and keep their rows even without studies); the
-- patients a correction touched keep their demographics as the correction left them.
UPDATE study SET patient_id = b.patient_id, header_patient_id = b.header_patient_id, updated_at = now()
FROM bk.study b
WHERE study.study_instance_uid = b.study_instance_uid AND b.header_patient_id IS NOT NULL;

INSERT INTO patient BY NAME
SELECT * REPLACE (now() AS updated_at) FROM bk.patient b WHERE b.patient_id NOT IN (SELECT patient_id FROM patient);

UPDATE patient SET merged_into = b.merged_into, created_at = b.created_at, updated_at = now()
FROM bk.patient b
WHERE patient.patient_id = b.patient_id;

UPDATE patient SET issuer_of_patient_id = b.issuer_of_patient_id, patient_name = b.patient_name,
                   patient_birth_date = b.patient_birth_date, patient_sex = b.patient_sex, updated_at = now()
FROM bk.patient b
WHERE patient.patient_id = b.patient_id
  AND patient.patient_id IN (SELECT from_patient_id FROM correction UNION SELECT to_patient_id FROM correction);

-- A study received after the backup under a patient merged since follows the merge, as the
-- intake would have filed it (merge_decide.sql).
UPDATE study SET header_patient_id = study.patient_id, patient_id = p.merged_into, updated_at = now()
FROM patient p
WHERE study.patient_id = p.patient_id AND p.merged_into IS NOT NULL AND study.header_patient_id IS NULL;

-- Recall pins, and when rows were first made.
UPDATE study SET pinned_until = b.pinned_until, created_at = b.created_at, updated_at = now()
FROM bk.study b
WHERE study.study_instance_uid = b.study_instance_uid;

UPDATE series SET created_at = b.created_at, updated_at = now()
FROM bk.series b
WHERE series.series_instance_uid = b.series_instance_uid;

-- The quarantine: what the backup knew of each file (valid UIDs, the catalogue's time, a
-- resubmission); a resubmitted file's sidecar went with it, so its row comes from the backup only.
UPDATE quarantine SET sop_instance_uid = b.sop_instance_uid, study_instance_uid = b.study_instance_uid,
                      quarantined_at = b.quarantined_at, status = b.status, resubmitted_at = b.resubmitted_at,
                      resubmitted_uri = b.resubmitted_uri
FROM bk.quarantine b
WHERE quarantine.quarantine_id = b.quarantine_id;

INSERT INTO quarantine BY NAME
SELECT * FROM bk.quarantine b
WHERE b.status = 'resubmitted' AND b.quarantine_id NOT IN (SELECT quarantine_id FROM quarantine);
