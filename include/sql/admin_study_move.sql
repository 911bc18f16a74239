-- Move study $study to patient $to (pacs.admin.corrections.study_move), inside its one
-- transaction, after its checks (the study and the patient exist, the patient is not merged, the
-- study is under another patient). Records the correction with the study's keys as they were,
-- then changes the study's patient; its first correction keeps the header's patient in
-- header_patient_id. The patient aggregates follow (admin_patient_aggregates.sql).
INSERT INTO correction (correction_id, action, study_instance_uid, from_patient_id, to_patient_id, before,
                        reason, corrected_at, run_id)
SELECT $correction_id, 'study_move', st.study_instance_uid, st.patient_id, $to,
       to_json({'study_instance_uid': st.study_instance_uid, 'patient_id': st.patient_id,
                'header_patient_id': st.header_patient_id})::VARCHAR,
       $reason, $now, $run_id
FROM study st WHERE st.study_instance_uid = $study;

CREATE OR REPLACE TEMP TABLE admin_touched_patients AS
SELECT patient_id FROM study WHERE study_instance_uid = $study UNION SELECT $to::VARCHAR;

UPDATE study SET
    header_patient_id = coalesce(header_patient_id, patient_id),
    patient_id = $to,
    updated_at = now()
WHERE study_instance_uid = $study;
