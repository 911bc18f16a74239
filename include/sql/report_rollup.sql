-- Capacity report: figures computed from the extract (registered tables image_cube,
-- study_cube, study_groups; see report_extract.sql) in an in-memory DuckDB.

-- name: volume
-- Studies, images and bytes per $period ('day' | 'week' (ISO, from Monday) | 'month') by
-- dimension: total, modality, tier and institution. Studies count on their day; a study with
-- several modalities counts once under each. Tier: images by where their fastest copy is,
-- studies by their tier state (online | migrating | offline).
WITH img AS (
    SELECT CAST(date_trunc($period, day) AS DATE) AS period_start, modality, tier, institution, images, bytes
    FROM image_cube
), img_dims AS (
    SELECT period_start, 'total' AS dimension, 'all' AS value, sum(images) AS images, sum(bytes) AS bytes
    FROM img GROUP BY ALL
    UNION ALL
    SELECT period_start, 'modality', modality, sum(images), sum(bytes) FROM img GROUP BY ALL
    UNION ALL
    SELECT period_start, 'tier', tier, sum(images), sum(bytes) FROM img GROUP BY ALL
    UNION ALL
    SELECT period_start, 'institution', institution, sum(images), sum(bytes) FROM img GROUP BY ALL
), st AS (
    SELECT CAST(date_trunc($period, day) AS DATE) AS period_start, modalities, tier_state, institution, studies
    FROM study_cube
), st_dims AS (
    SELECT period_start, 'total' AS dimension, 'all' AS value, sum(studies) AS studies FROM st GROUP BY ALL
    UNION ALL
    SELECT period_start, 'modality', m.modality, sum(studies) FROM st, unnest(modalities) AS m(modality) GROUP BY ALL
    UNION ALL
    SELECT period_start, 'tier', tier_state, sum(studies) FROM st GROUP BY ALL
    UNION ALL
    SELECT period_start, 'institution', institution, sum(studies) FROM st GROUP BY ALL
)
SELECT period_start, dimension, value,
       coalesce(s.studies, 0)::BIGINT AS studies,
       coalesce(i.images, 0)::BIGINT AS images,
       coalesce(i.bytes, 0)::BIGINT AS bytes
FROM img_dims i
FULL JOIN st_dims s USING (period_start, dimension, value)
ORDER BY period_start,
         CASE dimension WHEN 'total' THEN 0 WHEN 'modality' THEN 1 WHEN 'tier' THEN 2 ELSE 3 END,
         value;

-- name: daily_bytes
-- Bytes per day up to and including $through (the last complete day): the forecast's history.
SELECT day, sum(bytes)::DOUBLE AS bytes
FROM image_cube
WHERE day <= $through
GROUP BY day
ORDER BY day;

-- name: growth
-- Growth over the last 30, 90 and 365 complete days ending $through, against the archive's size
-- before the window and against the same window one year earlier (year over year).
WITH daily AS (
    SELECT day, 0 AS studies, sum(images) AS images, sum(bytes) AS bytes FROM image_cube GROUP BY day
    UNION ALL
    SELECT day, sum(studies), 0, 0 FROM study_cube GROUP BY day
), windows AS (
    SELECT * FROM (VALUES ('last_30_days', 30), ('last_90_days', 90), ('last_365_days', 365)) AS w(name, days)
), sums AS (
    SELECT w.name, w.days,
           coalesce(sum(d.studies) FILTER (WHERE d.day > $through - w.days AND d.day <= $through), 0) AS studies,
           coalesce(sum(d.images) FILTER (WHERE d.day > $through - w.days AND d.day <= $through), 0) AS images,
           coalesce(sum(d.bytes) FILTER (WHERE d.day > $through - w.days AND d.day <= $through), 0) AS bytes,
           coalesce(sum(d.bytes) FILTER (WHERE d.day <= $through - w.days), 0) AS archive_bytes_before,
           coalesce(sum(d.studies) FILTER (WHERE d.day > $through - w.days - 365 AND d.day <= $through - 365), 0)
               AS studies_year_before,
           coalesce(sum(d.bytes) FILTER (WHERE d.day > $through - w.days - 365 AND d.day <= $through - 365), 0)
               AS bytes_year_before
    FROM windows w LEFT JOIN daily d ON true
    GROUP BY w.name, w.days
)
SELECT name AS "window",
       CAST($through AS DATE) - days + 1 AS start_date,
       CAST($through AS DATE) AS end_date,
       days,
       studies::BIGINT AS studies,
       images::BIGINT AS images,
       bytes::BIGINT AS bytes,
       bytes / days AS bytes_per_day,
       archive_bytes_before::BIGINT AS archive_bytes_before,
       100.0 * bytes / nullif(archive_bytes_before, 0) AS archive_growth_pct,
       studies_year_before::BIGINT AS studies_year_before,
       bytes_year_before::BIGINT AS bytes_year_before,
       100.0 * (bytes - bytes_year_before) / nullif(bytes_year_before, 0) AS bytes_yoy_change_pct,
       100.0 * (studies - studies_year_before) / nullif(studies_year_before, 0) AS studies_yoy_change_pct
FROM sums
ORDER BY days;

-- name: tiers
-- Studies, images and bytes held in each tier (a copy exists there), as of the report.
SELECT 'online' AS tier,
       coalesce(sum(online_studies), 0)::BIGINT AS studies,
       coalesce(sum(online_images), 0)::BIGINT AS images,
       coalesce(sum(online_bytes), 0)::BIGINT AS bytes
FROM study_groups
UNION ALL
SELECT 'offline',
       coalesce(sum(offline_studies), 0)::BIGINT,
       coalesce(sum(offline_images), 0)::BIGINT,
       coalesce(sum(offline_bytes), 0)::BIGINT
FROM study_groups;

-- name: totals
SELECT coalesce(sum(studies), 0)::BIGINT AS studies,
       coalesce(sum(images), 0)::BIGINT AS images,
       coalesce(sum(bytes), 0)::BIGINT AS bytes
FROM study_groups;
