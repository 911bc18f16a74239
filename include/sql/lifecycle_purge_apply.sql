-- Forget the deleted online copies (temp table `purged(sop_instance_uid, study_instance_uid)`).
UPDATE image SET online_uri = NULL, online_verified_at = NULL, updated_at = now()
WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM purged);

CREATE OR REPLACE TEMP TABLE touched_studies AS SELECT DISTINCT study_instance_uid FROM purged;
