-- Reject the instances of temp table `admin_reject_targets` (admin_reject_targets.sql), inside
-- the command's one transaction: one `rejection` row per instance not rejected yet, so the first
-- rejection stands (an instance a KOS note or an earlier command rejected keeps its row) and a
-- retry adds nothing. rejected_at is the transaction's now(): the snapshot refresh takes rows
-- newer than its previous start.
INSERT INTO rejection (sop_instance_uid, series_instance_uid, study_instance_uid, code, meaning, source,
                       note_sop_instance_uid, reason, rejected_at, run_id)
SELECT t.sop_instance_uid, t.series_instance_uid, t.study_instance_uid, $code, $meaning, 'cli',
       NULL, $reason, now(), $run_id
FROM admin_reject_targets t
ANTI JOIN rejection r USING (sop_instance_uid);

DROP TABLE IF EXISTS temp.admin_reject_targets;
