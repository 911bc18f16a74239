-- Every image of the recalled studies (temp table `recall_studies`), with its copies; rejected
-- instances (table rejection) are not recalled.
SELECT i.sop_instance_uid, i.study_instance_uid, i.series_instance_uid, st.study_date, i.sha256, i.size_bytes,
       i.online_uri, i.offline_uri, i.offline_offset, i.offline_length
FROM image i
JOIN study st USING (study_instance_uid)
ANTI JOIN rejection r ON r.sop_instance_uid = i.sop_instance_uid
WHERE i.study_instance_uid IN (SELECT study_instance_uid FROM recall_studies)
ORDER BY i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid
