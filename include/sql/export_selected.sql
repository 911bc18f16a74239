-- pacs export: the selection's instances — the selected studies' (export_study_images) and the
-- named series' and SOP instances' ($series, $sops) — with each one's patient, rejected
-- instances left out, as in the analysts' views.
CREATE OR REPLACE TEMP TABLE export_selected AS
WITH picked AS (
    SELECT * FROM export_study_images
    UNION
    SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, i.sha256, i.size_bytes,
           i.online_uri, i.offline_uri, i.offline_offset, i.offline_length
    FROM image i
    WHERE (len($series::VARCHAR[]) > 0 OR len($sops::VARCHAR[]) > 0)
      AND (i.series_instance_uid IN (SELECT unnest($series::VARCHAR[]))
           OR i.sop_instance_uid IN (SELECT unnest($sops::VARCHAR[])))
)
SELECT p.sop_instance_uid, p.series_instance_uid, p.study_instance_uid, st.patient_id, p.sha256, p.size_bytes,
       p.online_uri, p.offline_uri, p.offline_offset, p.offline_length
FROM picked p JOIN study st USING (study_instance_uid)
WHERE p.sop_instance_uid NOT IN (SELECT sop_instance_uid FROM rejection);
