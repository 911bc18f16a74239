-- What the policy does at $logical_date (temp table `lifecycle_selected`): studies whose
-- online copies are evicted (evict = true: retention, modality override, watermark, expired
-- recall pin) and, when $archive_all, studies that only need their offline copy made now
-- (evict = false: every study is kept offline permanently).
-- Inputs: temp tables overrides(modality, years), hold_patients(patient_id),
-- hold_studies(study_instance_uid); params $logical_date, $default_years, $age_basis,
-- $high_bytes / $low_bytes (NULL when no watermarks), $archive_all.
-- Rejected instances (table rejection) are never migrated: a study's figures count its accepted
-- online images only, so a study entirely rejected is not planned. The watermark's usage is the
-- tier's real usage, rejected files included (they occupy it until `pacs purge`).
CREATE OR REPLACE TEMP TABLE lifecycle_eligible AS
WITH study_modality AS (
    SELECT study_instance_uid, unnest(modalities_in_study) AS modality FROM study
),
study_years AS (
    SELECT s.study_instance_uid,
           greatest($default_years, coalesce(max(o.years), 0)) AS years,
           max(o.years) AS override_years
    FROM study s
    LEFT JOIN study_modality m USING (study_instance_uid)
    LEFT JOIN overrides o USING (modality)
    GROUP BY s.study_instance_uid
),
online_images AS (
    SELECT study_instance_uid, count(*) AS images, sum(size_bytes) AS bytes,
           count(*) FILTER (WHERE offline_uri IS NULL) AS images_without_offline
    FROM image
    ANTI JOIN rejection r USING (sop_instance_uid)
    WHERE online_uri IS NOT NULL
    GROUP BY study_instance_uid
)
SELECT s.study_instance_uid, s.patient_id, s.pinned_until, y.years, y.override_years,
       CASE WHEN $age_basis = 'received_at' THEN CAST(s.first_received_at AS DATE)
            ELSE coalesce(s.study_date, CAST(s.first_received_at AS DATE)) END AS age_date,
       oi.images, oi.bytes, oi.images_without_offline
FROM study s
JOIN online_images oi USING (study_instance_uid)
JOIN study_years y USING (study_instance_uid)
ANTI JOIN hold_studies h USING (study_instance_uid)
ANTI JOIN hold_patients hp USING (patient_id)
WHERE s.pinned_until IS NULL OR s.pinned_until < $logical_date;

CREATE OR REPLACE TEMP TABLE lifecycle_due AS
SELECT *,
       CASE
           WHEN images_without_offline = 0 AND pinned_until IS NOT NULL THEN 'recall_expired'
           WHEN override_years IS NOT NULL AND override_years > $default_years THEN 'modality_override'
           ELSE 'retention'
       END AS rule
FROM lifecycle_eligible
WHERE age_date < CAST($logical_date - to_months(CAST(round(years * 12) AS INTEGER)) AS DATE);

-- Above the high watermark, the oldest other eligible studies move until the low watermark.
CREATE OR REPLACE TEMP TABLE lifecycle_watermark AS
WITH usage AS (
    SELECT coalesce(sum(size_bytes), 0) AS online_bytes FROM image WHERE online_uri IS NOT NULL
),
after_due AS (
    SELECT u.online_bytes - coalesce((SELECT sum(bytes) FROM lifecycle_due), 0) AS remaining,
           u.online_bytes
    FROM usage u
),
ordered AS (
    SELECT e.*,
           coalesce(sum(e.bytes) OVER (ORDER BY e.age_date, e.study_instance_uid
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS freed_before
    FROM lifecycle_eligible e ANTI JOIN lifecycle_due d USING (study_instance_uid)
)
SELECT o.*, 'watermark' AS rule
FROM ordered o, after_due a
WHERE $high_bytes IS NOT NULL
  AND a.online_bytes > $high_bytes
  AND a.remaining - o.freed_before > $low_bytes;

-- Studies with online images that have no offline copy yet (held and pinned ones included:
-- they stay online, but the offline tier keeps everything).
CREATE OR REPLACE TEMP TABLE lifecycle_archive AS
SELECT i.study_instance_uid, 'archive_copy' AS rule, NULL::DOUBLE AS retention_years,
       coalesce(s.study_date, CAST(s.first_received_at AS DATE)) AS age_date,
       count(*) AS images, sum(i.size_bytes) AS bytes
FROM image i JOIN study s USING (study_instance_uid)
ANTI JOIN rejection r USING (sop_instance_uid)
WHERE $archive_all AND i.online_uri IS NOT NULL AND i.offline_uri IS NULL
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE lifecycle_selected AS
SELECT study_instance_uid, rule, years AS retention_years, age_date, images, bytes, true AS evict
FROM lifecycle_due
UNION ALL
SELECT study_instance_uid, rule, years, age_date, images, bytes, true FROM lifecycle_watermark
UNION ALL
SELECT a.study_instance_uid, a.rule, a.retention_years, a.age_date, a.images, a.bytes, false
FROM lifecycle_archive a
ANTI JOIN lifecycle_due d USING (study_instance_uid)
ANTI JOIN lifecycle_watermark w USING (study_instance_uid);
