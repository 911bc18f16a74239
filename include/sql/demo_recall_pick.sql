-- make demo: the offline study to recall (the newest one, a typical "prior" a radiologist asks for).
SELECT study_instance_uid, study_date, image_count
FROM study WHERE tier_state = 'offline'
ORDER BY study_date DESC, study_instance_uid LIMIT 1
