-- Studies of earlier plans that never finished are re-planned (if still due) by this one.
CREATE OR REPLACE TEMP TABLE touched_studies AS
SELECT DISTINCT study_instance_uid FROM lifecycle_plan
WHERE state = 'planned' AND plan_id <> $plan_id AND $state = 'planned';

UPDATE lifecycle_plan SET state = 'failed'
WHERE state = 'planned' AND plan_id <> $plan_id AND $state = 'planned';

-- Record the plan: one row per selected study, spread over $batches migrate batches by age.
INSERT INTO lifecycle_plan (plan_id, study_instance_uid, rule, evict, retention_years, age_date, images, bytes,
                            batch_no, state)
SELECT $plan_id, study_instance_uid, rule, evict, retention_years, age_date, images, bytes,
       (ntile($batches) OVER (ORDER BY age_date, study_instance_uid)) - 1, $state
FROM lifecycle_selected
ON CONFLICT (plan_id, study_instance_uid) DO NOTHING;

UPDATE study SET tier_state = 'migrating', updated_at = now()
WHERE study_instance_uid IN (SELECT study_instance_uid FROM lifecycle_plan
                             WHERE plan_id = $plan_id AND state = 'planned' AND evict)
  AND tier_state <> 'migrating';
