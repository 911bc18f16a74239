-- The instances a purge may delete (pacs.admin.purge.plan), before the hold/pin/busy refusals:
-- rejected before $rejected_before (NULL: no rejection criterion), or expired under the policy's
-- retention rule (temp table `retention_cutoffs(modality, cutoff, label)`: an instance of a series
-- of that modality whose study is dated before the cutoff). Each with why, its copies and what
-- may refuse it. A rejected and expired instance is deleted as rejected.
CREATE OR REPLACE TEMP TABLE purge_eligible AS
WITH rejected AS (
    SELECT r.sop_instance_uid, 'rejected:' || r.code AS why
    FROM rejection r
    WHERE $rejected_before IS NOT NULL AND r.rejected_at < $rejected_before
),
expired AS (
    SELECT i.sop_instance_uid, 'retention:' || c.modality || ':' || c.label || 'y' AS why
    FROM image i
    JOIN series se USING (series_instance_uid)
    JOIN study st ON st.study_instance_uid = i.study_instance_uid
    JOIN retention_cutoffs c ON c.modality = se.modality
    WHERE st.study_date < c.cutoff
),
why AS (
    SELECT sop_instance_uid, why FROM rejected
    UNION ALL
    SELECT e.sop_instance_uid, e.why FROM expired e ANTI JOIN rejected r USING (sop_instance_uid)
)
SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, w.why, i.size_bytes,
       i.online_uri, i.offline_uri, i.offline_offset IS NOT NULL AS packed,
       (st.study_instance_uid IN (SELECT study_instance_uid FROM hold_studies)
        OR st.patient_id IN (SELECT patient_id FROM hold_patients)) AS held,
       coalesce(st.pinned_until >= $logical_date, false) AS pinned,
       st.tier_state = 'migrating' AS busy
FROM image i
JOIN why w USING (sop_instance_uid)
JOIN study st ON st.study_instance_uid = i.study_instance_uid;
