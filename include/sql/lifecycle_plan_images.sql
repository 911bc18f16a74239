-- The images of a plan that have an online copy: what the migrate tasks copy offline
-- (for an archive copy, only the images that have no offline copy yet). A rejected instance
-- (table rejection) is not migrated: it stays where it is until `pacs purge`.
SELECT p.batch_no, p.evict, i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, st.study_date,
       i.sha256, i.size_bytes, i.online_uri, i.offline_uri, i.offline_offset, i.offline_length,
       i.offline_verified_at
FROM lifecycle_plan p
JOIN image i USING (study_instance_uid)
JOIN study st USING (study_instance_uid)
ANTI JOIN rejection r ON r.sop_instance_uid = i.sop_instance_uid
WHERE p.plan_id = $plan_id AND i.online_uri IS NOT NULL AND (p.evict OR i.offline_uri IS NULL)
-- no ORDER BY: rows stream out of the join, so a plan of millions of images stays small in
-- memory; each migrate task filters its batch while reading.
