-- Every staged file's outcome, for the finalize step. A copy this ingest put in the online tier
-- for a file that was not catalogued (duplicate or reject) is deleted, unless the catalogue
-- refers to that very path (several copies of one SOP instance share its deterministic path).
SELECT d.*,
       (d.outcome IN ('duplicate', 'quarantined') AND coalesce(d.in_place, false) AND d.dst_uri IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM image i
                        WHERE i.sop_instance_uid = d.sop_instance_uid AND i.online_uri = d.dst_uri)) AS delete_dst
FROM decided d
ORDER BY d.batch_id, d.row_no
