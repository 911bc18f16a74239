SELECT s.* FROM series s JOIN snapshot_study_year y USING (study_instance_uid)
WHERE y.study_year = $year
ORDER BY s.study_instance_uid, s.series_instance_uid
