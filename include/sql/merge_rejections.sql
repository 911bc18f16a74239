-- KOS rejection notes among the newly catalogued files (Arrow table `new_images`, column
-- rejection_note: JSON {"code", "meaning", "refs": [[study, series, sop], ...]}, NULL for every
-- other file; pacs.dicom.rejection_note), inside the merge's transaction, after merge_apply.sql
-- catalogued the notes themselves: one `rejection` row per referenced SOP instance, whether or
-- not the instance is catalogued yet (a row may come first: the instance is rejected when it
-- arrives). The first rejection of an instance stands: an instance already rejected keeps its
-- row, and among this merge's notes the first received wins. Run only when a note is present.
INSERT INTO rejection (sop_instance_uid, series_instance_uid, study_instance_uid, code, meaning, source,
                       note_sop_instance_uid, reason, rejected_at, run_id)
WITH notes AS (
    SELECT n.sop_instance_uid AS note_sop, n.received_at, n.batch_id, n.row_no,
           json_extract_string(n.rejection_note, '$.code') AS code,
           json_extract_string(n.rejection_note, '$.meaning') AS meaning,
           unnest(from_json(json_extract(n.rejection_note, '$.refs'), '["VARCHAR[]"]')) AS ref
    FROM new_images n
    WHERE n.rejection_note IS NOT NULL
), refs AS (
    SELECT ref[3] AS sop_instance_uid, ref[2] AS series_instance_uid, ref[1] AS study_instance_uid,
           code, meaning, note_sop
    FROM notes
    QUALIFY row_number() OVER (PARTITION BY ref[3] ORDER BY received_at, batch_id, row_no) = 1
)
SELECT f.sop_instance_uid, f.series_instance_uid, f.study_instance_uid, f.code, f.meaning, 'kos',
       f.note_sop, NULL, now(), $run_id
FROM refs f
ANTI JOIN rejection r USING (sop_instance_uid);
