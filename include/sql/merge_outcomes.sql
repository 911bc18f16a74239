-- The few staged files whose own online copy finalize must delete: a copy this ingest put in
-- the online tier for a file that was not catalogued (duplicate or reject), unless the
-- catalogue refers to that very path (all copies of one SOP instance share its path). Runs after
-- merge_apply.sql, in the same transaction: `merge_known_image` (merge_decide.sql) holds the image
-- rows of the staged SOP instances from before the merge, `new_images` those it inserted.
WITH candidates AS (
    SELECT _i, sop_instance_uid, dst_uri FROM decided
    WHERE outcome IN ('duplicate', 'quarantined') AND coalesce(in_place, false) AND dst_uri IS NOT NULL
),
referenced AS (  -- image rows of these SOP instances: catalogued before this merge, or by it
    SELECT k.sop_instance_uid, k.online_uri AS dst_uri
    FROM merge_known_image k SEMI JOIN candidates c USING (sop_instance_uid)
    UNION
    SELECT n.sop_instance_uid, n.dst_uri FROM new_images n SEMI JOIN candidates c USING (sop_instance_uid)
)
SELECT c._i
FROM candidates c ANTI JOIN referenced r USING (sop_instance_uid, dst_uri)
