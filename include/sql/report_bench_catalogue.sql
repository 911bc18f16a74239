-- A synthetic catalogue for bench/capacity_report.py, generated straight into DuckDB (no files).
-- Parameters: $studies, $images (exact totals), $first_day, $days (history length),
-- $patients, $online_years (studies older than this at $first_day + $days are offline).
-- Volume grows 8 % a year, with a weekly rhythm (quiet weekends) and a summer/December dip.
CREATE OR REPLACE TEMP TABLE bench_day AS
SELECT d, ($first_day::DATE + d::INTEGER) AS day,
       pow(1.08, d / 365.25)
         * CASE dayofweek($first_day::DATE + d::INTEGER) WHEN 0 THEN 0.3 WHEN 6 THEN 0.4 ELSE 1.0 END
         * (1 + 0.08 * cos(2 * pi() * (dayofyear($first_day::DATE + d::INTEGER) - 15) / 365.25)) AS w
FROM range($days) t(d);

-- Studies per day, largest-remainder rounding so the total is exactly $studies.
CREATE OR REPLACE TEMP TABLE bench_day_n AS
WITH t AS (SELECT d, day, w * $studies / sum(w) OVER () AS target FROM bench_day),
b AS (SELECT *, floor(target)::BIGINT AS base FROM t)
SELECT d, day,
       base + (row_number() OVER (ORDER BY target - base DESC, d)
               <= $studies - sum(base) OVER ())::BIGINT AS n
FROM b;

CREATE OR REPLACE TEMP TABLE bench_study AS
WITH s AS (
    SELECT day, row_number() OVER (ORDER BY day, k) - 1 AS i
    FROM bench_day_n, unnest(range(n)) u(k)
), m AS (
    SELECT *, hash(i, 'modality') % 100 AS r FROM s
)
SELECT i, day,
       CASE WHEN r < 30 THEN 'CR' WHEN r < 50 THEN 'CT' WHEN r < 62 THEN 'MR'
            WHEN r < 80 THEN 'US' WHEN r < 92 THEN 'DX' ELSE 'MG' END AS modality,
       ['Northfield General', 'St. Anne Hospital', 'Riverside Clinic', 'Eastgate Imaging Centre',
        'Hillcrest Children''s'][CASE WHEN hash(i, 'institution') % 100 < 45 THEN 1
                                      WHEN hash(i, 'institution') % 100 < 70 THEN 2
                                      WHEN hash(i, 'institution') % 100 < 85 THEN 3
                                      WHEN hash(i, 'institution') % 100 < 95 THEN 4 ELSE 5 END] AS institution,
       'P' || lpad((hash(i, 'patient') % $patients)::VARCHAR, 7, '0') AS patient_id,
       '1.2.826.0.1.3680043.10.999.1.' || i AS study_uid
FROM m;

-- Images per study by modality (CT and MR studies are large series stacks), randomised,
-- then scaled with largest-remainder rounding to exactly $images.
CREATE OR REPLACE TEMP TABLE bench_study_n AS
WITH t AS (
    SELECT *, (CASE modality WHEN 'CT' THEN 330 WHEN 'MR' THEN 220 WHEN 'US' THEN 30
                             WHEN 'CR' THEN 2 WHEN 'DX' THEN 3 ELSE 4 END)
              * (0.5 + (hash(i, 'images') % 1000) / 1000.0) AS w
    FROM bench_study
), s AS (SELECT *, w * $images / sum(w) OVER () AS target FROM t),
b AS (SELECT *, greatest(floor(target), 1)::BIGINT AS base FROM s)
SELECT i, day, modality, institution, patient_id, study_uid,
       base + (row_number() OVER (ORDER BY target - base DESC, i) <= $images - sum(base) OVER ())::BIGINT AS n,
       CASE modality WHEN 'CT' THEN 4 WHEN 'MR' THEN 6 WHEN 'US' THEN 2 WHEN 'CR' THEN 2
                     WHEN 'DX' THEN 2 ELSE 4 END AS n_series,
       CASE modality WHEN 'CT' THEN 525000 WHEN 'MR' THEN 200000 WHEN 'US' THEN 1200000
                     WHEN 'CR' THEN 12000000 WHEN 'DX' THEN 10000000 ELSE 40000000 END AS image_bytes,
       CASE WHEN day < ($first_day::DATE + $days::INTEGER) - INTERVAL ($online_years) YEAR
                 AND NOT (modality = 'MG' AND day >= ($first_day::DATE + $days::INTEGER) - INTERVAL 5 YEAR)
            THEN CASE WHEN hash(i, 'migrating') % 100 < 2 THEN 'migrating' ELSE 'offline' END
            ELSE 'online' END AS tier_state
FROM b;

CREATE TABLE image AS
SELECT '1.2.826.0.1.3680043.10.999.3.' || s.i || '.' || k AS sop_instance_uid,
       '1.2.840.10008.5.1.4.1.1.2' AS sop_class_uid,
       s.study_uid || '.' || (k % s.n_series) AS series_instance_uid,
       s.study_uid AS study_instance_uid,
       (k // s.n_series + 1)::INTEGER AS instance_number,
       s.day AS content_date,
       '1.2.840.10008.1.2.1' AS transfer_syntax_uid,
       512 AS rows, 512 AS columns, 1 AS number_of_frames, 16 AS bits_allocated,
       md5(s.study_uid || k) AS sha256,
       (s.image_bytes * (0.9 + (hash(s.i, k) % 200) / 1000.0))::BIGINT AS size_bytes,
       -- the fastest copy: online while one exists. A migrating study is half moved: even
       -- images are offline only, odd ones copied offline but still online.
       CASE WHEN s.tier_state = 'online' OR (s.tier_state = 'migrating' AND k % 2 = 1) THEN 'online'
            ELSE 'offline' END AS tier,
       CASE WHEN s.tier_state = 'online' OR (s.tier_state = 'migrating' AND k % 2 = 1)
            THEN '/archive/online/' || s.i || '/' || k
            ELSE 's3://archive/offline/' || s.i || '/' || k END AS uri,
       CASE WHEN s.tier_state = 'online' OR (s.tier_state = 'migrating' AND k % 2 = 1)
            THEN '/archive/online/' || s.i || '/' || k END AS online_uri,
       NULL::TIMESTAMPTZ AS online_verified_at,
       CASE WHEN s.tier_state <> 'online' THEN 's3://archive/offline/' || s.i || '/' || k END AS offline_uri,
       NULL::BIGINT AS offline_offset, NULL::BIGINT AS offline_length, NULL::TIMESTAMPTZ AS offline_verified_at,
       (s.day + INTERVAL 7 HOUR + to_seconds((hash(s.i, 'received') % 36000)::BIGINT))::TIMESTAMPTZ AS received_at,
       (s.day + INTERVAL 8 HOUR)::TIMESTAMPTZ AS ingested_at,
       'bench-' || (s.i // 500) AS batch_id,
       (s.day + INTERVAL 8 HOUR)::TIMESTAMPTZ AS updated_at
FROM bench_study_n s, unnest(range(s.n)) u(k);

CREATE TABLE series AS
SELECT series_instance_uid, any_value(study_instance_uid) AS study_instance_uid,
       any_value(st.modality) AS modality,
       NULL::INTEGER AS series_number, NULL::VARCHAR AS series_description,
       any_value(content_date) AS series_date, NULL::VARCHAR AS body_part_examined,
       'ACME' AS manufacturer, NULL::VARCHAR AS manufacturer_model_name, NULL::VARCHAR AS station_name,
       count(*) AS image_count, sum(size_bytes) AS size_bytes,
       min(received_at) AS first_received_at, max(received_at) AS last_received_at,
       min(received_at) AS created_at, max(received_at) AS updated_at
FROM image i JOIN bench_study_n st ON st.study_uid = i.study_instance_uid
GROUP BY series_instance_uid;

CREATE TABLE study AS
SELECT s.study_uid AS study_instance_uid, s.patient_id, s.day AS study_date, '080000' AS study_time,
       'A' || s.i AS accession_number, NULL::VARCHAR AS study_id, NULL::VARCHAR AS study_description,
       NULL::VARCHAR AS referring_physician_name, s.institution AS institution_name,
       lpad((20 + hash(s.i, 'age') % 70)::VARCHAR, 3, '0') || 'Y' AS patient_age,
       [s.modality] AS modalities_in_study, a.series_count::INTEGER AS series_count, a.image_count, a.size_bytes,
       a.online_image_count, a.offline_image_count, a.first_received_at, a.last_received_at,
       s.tier_state, NULL::DATE AS pinned_until, a.first_received_at AS created_at, a.last_received_at AS updated_at
FROM bench_study_n s JOIN (
    SELECT study_instance_uid, count(DISTINCT series_instance_uid) AS series_count, count(*) AS image_count,
           sum(size_bytes) AS size_bytes, count(*) FILTER (WHERE online_uri IS NOT NULL) AS online_image_count,
           count(*) FILTER (WHERE offline_uri IS NOT NULL) AS offline_image_count,
           min(received_at) AS first_received_at, max(received_at) AS last_received_at
    FROM image GROUP BY ALL
) a ON a.study_instance_uid = s.study_uid;

CREATE TABLE patient AS
SELECT patient_id, NULL::VARCHAR AS issuer_of_patient_id, 'BENCH^' || patient_id AS patient_name,
       DATE '1930-01-01' + (hash(patient_id) % 30000)::INTEGER AS patient_birth_date,
       CASE WHEN hash(patient_id, 'sex') % 2 = 0 THEN 'F' ELSE 'M' END AS patient_sex,
       count(*)::INTEGER AS study_count, min(study_date) AS first_study_date, max(study_date) AS last_study_date,
       min(created_at) AS created_at, max(updated_at) AS updated_at
FROM study GROUP BY patient_id;
