-- A plan its approver rejected (policy approve_plan): its studies leave the plan, and
-- lifecycle_study_state (run next) gives them back the tier state their copies say; nothing
-- was copied, switched or deleted. Its plan file stays in the journal as the record.
CREATE OR REPLACE TEMP TABLE touched_studies AS
SELECT study_instance_uid FROM lifecycle_plan WHERE plan_id = $plan_id AND state = 'planned';

UPDATE lifecycle_plan SET state = 'rejected' WHERE plan_id = $plan_id AND state = 'planned';

UPDATE lifecycle_run SET state = 'rejected', finished_at = $now WHERE plan_id = $plan_id;
