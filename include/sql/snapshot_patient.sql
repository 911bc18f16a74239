SELECT * FROM patient ORDER BY patient_id
