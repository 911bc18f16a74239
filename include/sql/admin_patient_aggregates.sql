-- Recompute the aggregates of the patients in temp table `admin_touched_patients` (a
-- correction's old and new patient) from their studies: a patient left without studies counts
-- none. The same values as aggregates.sql, which recomputes only patients that still hold a
-- touched study.
UPDATE patient SET
    study_count = a.study_count,
    first_study_date = a.first_study_date,
    last_study_date = a.last_study_date,
    updated_at = now()
FROM (
    SELECT t.patient_id, count(st.study_instance_uid)::INTEGER AS study_count,
           min(st.study_date) AS first_study_date, max(st.study_date) AS last_study_date
    FROM admin_touched_patients t LEFT JOIN study st USING (patient_id)
    GROUP BY t.patient_id
) a
WHERE patient.patient_id = a.patient_id;

DROP TABLE IF EXISTS temp.admin_touched_patients;
