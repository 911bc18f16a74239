-- Record the verified offline copies and switch evicted studies to them, study by study: a
-- study switches only when every image the plan listed has a verified offline copy (an
-- archive-copy study keeps its online tier). Inputs: temp tables
-- `planned_images(sop_instance_uid, study_instance_uid)` and `copied(sop_instance_uid,
-- offline_uri, offline_offset, offline_length, verified_at)`; params $plan_id, $now.
CREATE OR REPLACE TEMP TABLE complete_studies AS
SELECT p.study_instance_uid
FROM lifecycle_plan p
WHERE p.plan_id = $plan_id AND p.state = 'planned'
  AND NOT EXISTS (
      SELECT 1 FROM planned_images pi
      JOIN image i USING (sop_instance_uid)
      LEFT JOIN copied c USING (sop_instance_uid)
      WHERE pi.study_instance_uid = p.study_instance_uid
        AND c.sop_instance_uid IS NULL
        AND (i.offline_uri IS NULL OR i.offline_verified_at IS NULL)
  );

UPDATE image SET
    offline_uri = c.offline_uri,
    offline_offset = c.offline_offset,
    offline_length = c.offline_length,
    offline_verified_at = c.verified_at,
    updated_at = now()
FROM copied c
WHERE image.sop_instance_uid = c.sop_instance_uid
  AND image.study_instance_uid IN (SELECT study_instance_uid FROM complete_studies);

UPDATE image SET tier = 'offline', uri = offline_uri, updated_at = now()
WHERE study_instance_uid IN (SELECT study_instance_uid FROM complete_studies)
  AND study_instance_uid IN (SELECT study_instance_uid FROM lifecycle_plan WHERE plan_id = $plan_id AND evict)
  AND sop_instance_uid IN (SELECT sop_instance_uid FROM planned_images)
  AND offline_uri IS NOT NULL;

UPDATE lifecycle_plan SET state = 'moved'
WHERE plan_id = $plan_id AND study_instance_uid IN (SELECT study_instance_uid FROM complete_studies);

CREATE OR REPLACE TEMP TABLE touched_studies AS SELECT study_instance_uid FROM complete_studies;
