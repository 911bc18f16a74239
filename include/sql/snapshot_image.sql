SELECT i.* FROM image i JOIN snapshot_study_year y USING (study_instance_uid)
WHERE y.study_year = $year
ORDER BY i.study_instance_uid, i.series_instance_uid, i.instance_number
