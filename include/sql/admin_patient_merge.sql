-- Merge patient $from into patient $into (pacs.admin.corrections.patient_merge), inside its one
-- transaction, after its checks (both exist, differ, neither is merged). Records the correction
-- with the keys it changes as they were, then moves every study of $from to $into (the first
-- correction of a study keeps its header's patient in header_patient_id) and marks $from, and
-- any patient merged into $from before, as merged into $into (merged_into is always one hop).
-- The patient aggregates follow (admin_patient_aggregates.sql). No file and no image row changes.
INSERT INTO correction (correction_id, action, study_instance_uid, from_patient_id, to_patient_id, before,
                        reason, corrected_at, run_id)
SELECT $correction_id, 'patient_merge', NULL, p.patient_id, $into,
       to_json({
           'patient_id': p.patient_id,
           'merged_into': p.merged_into,
           'merged_patients': (SELECT coalesce(list(m.patient_id ORDER BY m.patient_id), [])
                               FROM patient m WHERE m.merged_into = $from),
           'studies': (SELECT coalesce(list({'study_instance_uid': st.study_instance_uid,
                                             'patient_id': st.patient_id,
                                             'header_patient_id': st.header_patient_id}
                                            ORDER BY st.study_instance_uid), [])
                       FROM study st WHERE st.patient_id = $from)
       })::VARCHAR,
       $reason, $now, $run_id
FROM patient p WHERE p.patient_id = $from;

CREATE OR REPLACE TEMP TABLE admin_touched_patients AS
SELECT $from::VARCHAR AS patient_id UNION SELECT $into::VARCHAR;

UPDATE study SET
    header_patient_id = coalesce(header_patient_id, patient_id),
    patient_id = $into,
    updated_at = now()
WHERE patient_id = $from;

UPDATE patient SET
    merged_into = $into,
    updated_at = now()
WHERE patient_id = $from OR merged_into = $from;
