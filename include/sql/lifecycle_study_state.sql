-- After aggregates: a study in an unfinished plan is migrating; a study whose images all have
-- an online copy is online (never migrated, or recalled); otherwise it is offline (late
-- arrivals wait online for the next run).
UPDATE study SET tier_state = CASE
        WHEN study_instance_uid IN (SELECT study_instance_uid FROM lifecycle_plan WHERE state = 'planned' AND evict)
            THEN 'migrating'
        WHEN online_image_count = image_count THEN 'online'
        ELSE 'offline' END,
    updated_at = now()
WHERE study_instance_uid IN (SELECT study_instance_uid FROM touched_studies);
