-- The catalogued SOP instances `pacs reject` names (pacs.admin.rejection.reject): every instance
-- of study $study, of series $series, or the one instance $sop (exactly one is not NULL), into
-- temp table `admin_reject_targets`. A scan of image: an administrator's command, not a hot path.
CREATE OR REPLACE TEMP TABLE admin_reject_targets AS
SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid
FROM image i
WHERE i.study_instance_uid = $study OR i.series_instance_uid = $series OR i.sop_instance_uid = $sop;
