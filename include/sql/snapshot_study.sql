SELECT s.* FROM study s JOIN snapshot_study_year y USING (study_instance_uid)
WHERE y.study_year = $year
ORDER BY s.study_date, s.study_instance_uid
