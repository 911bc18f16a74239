-- The few staged files whose own online copy finalize must delete: a copy this ingest put in
-- the online tier for a file that was not catalogued (duplicate or reject), unless the
-- catalogue refers to that very path (all copies of one SOP instance share its path).
WITH candidates AS (
    SELECT _i, sop_instance_uid, dst_uri FROM decided
    WHERE outcome IN ('duplicate', 'quarantined') AND coalesce(in_place, false) AND dst_uri IS NOT NULL
),
referenced AS (
    SELECT DISTINCT i.sop_instance_uid, i.online_uri AS dst_uri
    FROM image i SEMI JOIN candidates c USING (sop_instance_uid)
)
SELECT c._i
FROM candidates c ANTI JOIN referenced r USING (sop_instance_uid, dst_uri)
