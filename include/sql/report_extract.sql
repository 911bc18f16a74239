-- Capacity report: what it reads from the catalogue (the live file read-only, or the Parquet
-- snapshot's views), as small aggregates, so the catalogue is held only for a short read.
-- Parameters: $as_of (TIMESTAMPTZ: only images received before it count),
-- $basis ('study_date' | 'received_at': the day bytes count on; a study without a date, or dated
-- after $last_day, counts on the day it arrived), $last_day (DATE: the UTC day of the last moment
-- before $as_of, so no figure falls after the report's date), $hold_patients, $hold_studies
-- (VARCHAR[]: the policy's holds).
-- Days are UTC calendar days, from epoch microseconds (no time-zone lookup per row).
--
-- Scanning 30 million image rows is what costs, so images are read only where the catalogue's
-- exact aggregates cannot answer. That relies on invariants `pacs check` verifies (checks.sql):
-- an image's tier is 'online' exactly when it has an online copy (image_tier_without_copy), and
-- series.image_count / size_bytes and study.image_count / online_image_count /
-- offline_image_count are exact (series_aggregates_wrong, study_aggregates_wrong). A study is
-- "clean" when all its images are in one tier, all arrived before $as_of and (for the
-- received_at basis) on one UTC day: its series' aggregates are its figures. Other studies are
-- read image by image.
--
-- Rejected instances (table rejection) are not in any figure: a study with a rejection is read
-- image by image (it is "mixed"), its rejected images left out, and a study entirely rejected
-- counts as no study.

-- name: mixed_studies
CREATE OR REPLACE TEMP TABLE report_mixed_study AS
SELECT study_instance_uid
FROM study
WHERE first_received_at < $as_of
  AND (online_image_count NOT IN (0, image_count)
       OR study_instance_uid IN (SELECT study_instance_uid FROM rejection)
       OR last_received_at >= $as_of
       OR ($basis = 'received_at'
           AND epoch_us(first_received_at) // 86400000000 <> epoch_us(last_received_at) // 86400000000));

-- name: series_tier
-- Images and bytes per study, modality (of the series), tier and, for the received_at basis,
-- arrival day.
CREATE OR REPLACE TEMP TABLE report_series_tier AS
SELECT se.study_instance_uid,
       se.modality,
       CASE WHEN st.online_image_count = st.image_count THEN 'online' ELSE 'offline' END AS tier,
       CASE WHEN $basis = 'received_at'
            THEN DATE '1970-01-01' + CAST(epoch_us(st.first_received_at) // 86400000000 AS INTEGER) END
           AS received_day,
       sum(se.image_count)::BIGINT AS images,
       sum(se.size_bytes)::BIGINT AS bytes
FROM series se
JOIN study st USING (study_instance_uid)
ANTI JOIN report_mixed_study m USING (study_instance_uid)
WHERE st.first_received_at < $as_of
GROUP BY ALL
UNION ALL
SELECT se.study_instance_uid, se.modality, t.tier, t.received_day,
       sum(t.images)::BIGINT, sum(t.bytes)::BIGINT
FROM (
    SELECT i.series_instance_uid,
           i.tier,
           CASE WHEN $basis = 'received_at'
                THEN DATE '1970-01-01' + CAST(epoch_us(i.received_at) // 86400000000 AS INTEGER) END
               AS received_day,
           count(*) AS images,
           sum(i.size_bytes) AS bytes
    FROM image i
    SEMI JOIN report_mixed_study m USING (study_instance_uid)
    ANTI JOIN rejection r ON r.sop_instance_uid = i.sop_instance_uid
    WHERE i.received_at < $as_of
    GROUP BY ALL
) t
JOIN series se USING (series_instance_uid)
GROUP BY ALL;

-- name: partial_offline
-- Images with an offline copy in studies where the study's counters cannot tell which they are.
CREATE OR REPLACE TEMP TABLE report_partial_offline AS
WITH partial AS (
    SELECT study_instance_uid
    FROM study
    WHERE offline_image_count > 0
      AND (offline_image_count < image_count OR last_received_at >= $as_of)
)
SELECT i.study_instance_uid,
       count(*) AS offline_images,
       sum(i.size_bytes) AS offline_bytes,
       coalesce(sum(i.size_bytes) FILTER (WHERE i.tier = 'online'), 0) AS online_and_offline_bytes
FROM image i
SEMI JOIN partial USING (study_instance_uid)
ANTI JOIN rejection r ON r.sop_instance_uid = i.sop_instance_uid
WHERE i.received_at < $as_of AND i.offline_uri IS NOT NULL
GROUP BY ALL;

-- name: image_cube
-- Images and bytes by day, modality, tier and institution.
SELECT coalesce(t.received_day, CASE WHEN st.study_date <= $last_day THEN st.study_date END,
                DATE '1970-01-01' + CAST(epoch_us(st.first_received_at) // 86400000000 AS INTEGER)) AS day,
       t.modality,
       t.tier,
       coalesce(st.institution_name, '(not recorded)') AS institution,
       sum(t.images)::BIGINT AS images,
       sum(t.bytes)::BIGINT AS bytes
FROM report_series_tier t
JOIN study st USING (study_instance_uid)
GROUP BY ALL;

-- name: study_cube
-- Studies by day, the modalities in the study, current tier state and institution.
SELECT CASE WHEN $basis = 'received_at'
            THEN DATE '1970-01-01' + CAST(epoch_us(first_received_at) // 86400000000 AS INTEGER)
            ELSE coalesce(CASE WHEN study_date <= $last_day THEN study_date END,
                          DATE '1970-01-01' + CAST(epoch_us(first_received_at) // 86400000000 AS INTEGER)) END AS day,
       coalesce(modalities_in_study, []::VARCHAR[]) AS modalities,
       tier_state,
       coalesce(institution_name, '(not recorded)') AS institution,
       count(*) AS studies
FROM study
WHERE first_received_at < $as_of
  AND NOT (study_instance_uid IN (SELECT study_instance_uid FROM rejection)   -- entirely rejected
           AND study_instance_uid NOT IN (SELECT study_instance_uid FROM report_series_tier))
GROUP BY ALL;

-- name: study_groups
-- Bytes per tier of studies grouped by what the lifecycle policy decides on: study date,
-- arrival date, modalities, hold and recall pin.
WITH per_study AS (
    SELECT study_instance_uid,
           sum(images) AS images,
           sum(bytes) AS bytes,
           coalesce(sum(images) FILTER (WHERE tier = 'online'), 0) AS online_images,
           coalesce(sum(bytes) FILTER (WHERE tier = 'online'), 0) AS online_bytes
    FROM report_series_tier
    GROUP BY study_instance_uid
), offline AS (
    SELECT p.study_instance_uid, p.images, p.bytes, p.online_images, p.online_bytes,
           CASE WHEN st.offline_image_count = 0 THEN 0
                WHEN po.study_instance_uid IS NOT NULL THEN po.offline_images
                ELSE p.images END AS offline_images,
           CASE WHEN st.offline_image_count = 0 THEN 0
                WHEN po.study_instance_uid IS NOT NULL THEN po.offline_bytes
                ELSE p.bytes END AS offline_bytes,
           p.online_bytes - CASE WHEN st.offline_image_count = 0 THEN 0
                                 WHEN po.study_instance_uid IS NOT NULL THEN po.online_and_offline_bytes
                                 ELSE p.online_bytes END AS online_only_bytes
    FROM per_study p
    JOIN study st USING (study_instance_uid)
    LEFT JOIN report_partial_offline po USING (study_instance_uid)
)
SELECT s.study_date,
       DATE '1970-01-01' + CAST(epoch_us(s.first_received_at) // 86400000000 AS INTEGER) AS received_date,
       coalesce(s.modalities_in_study, []::VARCHAR[]) AS modalities,
       (list_contains($hold_studies::VARCHAR[], s.study_instance_uid)
        OR list_contains($hold_patients::VARCHAR[], s.patient_id)) AS held,
       s.pinned_until,
       count(*) AS studies,
       sum(o.images)::BIGINT AS images,
       sum(o.bytes)::BIGINT AS bytes,
       count(*) FILTER (WHERE o.online_images > 0) AS online_studies,
       sum(o.online_images)::BIGINT AS online_images,
       sum(o.online_bytes)::BIGINT AS online_bytes,
       sum(o.online_only_bytes)::BIGINT AS online_only_bytes,
       count(*) FILTER (WHERE o.offline_images > 0) AS offline_studies,
       sum(o.offline_images)::BIGINT AS offline_images,
       sum(o.offline_bytes)::BIGINT AS offline_bytes
FROM offline o
JOIN study s USING (study_instance_uid)
GROUP BY ALL;

-- name: patients
-- Patients with at least one study received before $as_of (not entirely rejected).
SELECT count(DISTINCT patient_id) AS patients
FROM study
WHERE first_received_at < $as_of
  AND NOT (study_instance_uid IN (SELECT study_instance_uid FROM rejection)
           AND study_instance_uid NOT IN (SELECT study_instance_uid FROM report_series_tier));

-- name: received_later
-- Images already catalogued but received at or after $as_of: the next reports count them.
WITH later AS (
    SELECT count(*) AS images, coalesce(sum(i.size_bytes), 0) AS bytes
    FROM image i
    SEMI JOIN report_mixed_study m USING (study_instance_uid)
    ANTI JOIN rejection r ON r.sop_instance_uid = i.sop_instance_uid
    WHERE i.received_at >= $as_of
    UNION ALL
    SELECT coalesce(sum(image_count), 0), coalesce(sum(size_bytes), 0)
    FROM study
    WHERE first_received_at >= $as_of
    UNION ALL  -- less their rejected images
    SELECT -count(*), -coalesce(sum(i.size_bytes), 0)
    FROM image i
    SEMI JOIN rejection r USING (sop_instance_uid)
    JOIN study st USING (study_instance_uid)
    WHERE st.first_received_at >= $as_of
)
SELECT sum(images)::BIGINT AS images, sum(bytes)::BIGINT AS bytes
FROM later;
