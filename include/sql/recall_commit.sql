-- Record recalled online copies (temp table `recalled(sop_instance_uid, online_uri)`) and pin
-- the studies (temp table `recall_studies`) online until $pinned_until.
UPDATE image SET online_uri = r.online_uri, online_verified_at = $now, tier = 'online', uri = r.online_uri,
                 updated_at = now()
FROM recalled r
WHERE image.sop_instance_uid = r.sop_instance_uid;

UPDATE study SET pinned_until = greatest(coalesce(pinned_until, $pinned_until), $pinned_until), updated_at = now()
WHERE study_instance_uid IN (SELECT study_instance_uid FROM recall_studies);

INSERT INTO recall (recall_id, study_instance_uid, run_id, pinned_until, images, bytes, state, requested_at,
                    finished_at)
SELECT $recall_id, rs.study_instance_uid, $run_id, $pinned_until,
       (SELECT count(*) FROM recalled r JOIN image i USING (sop_instance_uid)
        WHERE i.study_instance_uid = rs.study_instance_uid),
       (SELECT coalesce(sum(i.size_bytes), 0) FROM recalled r JOIN image i USING (sop_instance_uid)
        WHERE i.study_instance_uid = rs.study_instance_uid),
       $state, $now, $now
FROM recall_studies rs
ON CONFLICT (recall_id, study_instance_uid) DO UPDATE SET
    images = excluded.images, bytes = excluded.bytes, state = excluded.state, finished_at = excluded.finished_at;

CREATE OR REPLACE TEMP TABLE touched_studies AS SELECT study_instance_uid FROM recall_studies;
