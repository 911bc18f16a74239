-- Analysts' views for common questions. Created as TEMP views on every connection `pacs query`
-- opens (the Parquet snapshot's in-memory database, or the live catalogue opened read-only), over
-- the tables patient, study, series, image and rejection. These views show patient data: for
-- analysts without PHI access use the de-identified views (views_deid.sql, `pacs query --deidentified`).
--
-- Rejected instances (a row of `rejection` names them: `pacs reject`, KOS rejection notes) are
-- kept in the tables but left out of every view here. The tables' own study and series counts
-- (image_count, size_bytes, ...) count every catalogued instance; the views' counts are those of
-- the accepted instances only (accepted_series and accepted_study recompute them for the few
-- studies that have rejections), and a series or study whose instances are all rejected is left
-- out. Join `image` with `rejection` to see what is rejected.

-- Per series, its catalogued instances that are rejected.
CREATE OR REPLACE TEMP VIEW rejected_series_figures AS
SELECT i.series_instance_uid,
       any_value(i.study_instance_uid) AS study_instance_uid,
       count(*) AS images,
       sum(i.size_bytes)::BIGINT AS bytes,
       count(*) FILTER (WHERE i.online_uri IS NOT NULL) AS online_images,
       count(*) FILTER (WHERE i.offline_uri IS NOT NULL) AS offline_images
FROM image i
SEMI JOIN rejection r USING (sop_instance_uid)
GROUP BY i.series_instance_uid;

-- The images no rejection names.
CREATE OR REPLACE TEMP VIEW accepted_image AS
SELECT i.* FROM image i ANTI JOIN rejection r USING (sop_instance_uid);

-- Series with their accepted instances' counts; a series entirely rejected is left out.
CREATE OR REPLACE TEMP VIEW accepted_series AS
SELECT se.* REPLACE (se.image_count - coalesce(r.images, 0) AS image_count,
                     se.size_bytes - coalesce(r.bytes, 0) AS size_bytes)
FROM series se
LEFT JOIN rejected_series_figures r USING (series_instance_uid)
WHERE r.images IS NULL OR se.image_count > r.images;

-- Studies with their accepted instances' counts and modalities; a study entirely rejected is
-- left out.
CREATE OR REPLACE TEMP VIEW accepted_study AS
WITH rejected AS (
    SELECT study_instance_uid, sum(images) AS images, sum(bytes) AS bytes,
           sum(online_images) AS online_images, sum(offline_images) AS offline_images
    FROM rejected_series_figures
    GROUP BY study_instance_uid
), kept AS (
    SELECT study_instance_uid, count(*) AS series_count,
           list_sort(list_distinct(list(modality))) AS modalities_in_study
    FROM accepted_series
    WHERE study_instance_uid IN (SELECT study_instance_uid FROM rejected)
    GROUP BY study_instance_uid
)
SELECT s.* REPLACE (
           CASE WHEN r.study_instance_uid IS NULL THEN s.modalities_in_study ELSE k.modalities_in_study END
               AS modalities_in_study,
           CASE WHEN r.study_instance_uid IS NULL THEN s.series_count ELSE k.series_count::INTEGER END
               AS series_count,
           s.image_count - coalesce(r.images, 0) AS image_count,
           s.size_bytes - coalesce(r.bytes, 0) AS size_bytes,
           s.online_image_count - coalesce(r.online_images, 0) AS online_image_count,
           s.offline_image_count - coalesce(r.offline_images, 0) AS offline_image_count)
FROM study s
LEFT JOIN rejected r USING (study_instance_uid)
LEFT JOIN kept k USING (study_instance_uid)
WHERE r.study_instance_uid IS NULL OR s.image_count > r.images;

-- Studies with the patient's sex and age at the time of the study. Age in whole years from the
-- birth date when both dates are known, else from the DICOM Patient's Age (nnnY/M/W/D) recorded
-- in the study; age_source says which.
CREATE OR REPLACE TEMP VIEW study_patient AS
SELECT s.study_instance_uid,
       s.patient_id,
       p.patient_name,
       p.patient_sex,
       p.patient_birth_date,
       s.study_date,
       year(s.study_date) AS study_year,
       coalesce(
           CASE WHEN p.patient_birth_date IS NOT NULL AND s.study_date IS NOT NULL
                     AND s.study_date >= p.patient_birth_date
                THEN date_diff('year', p.patient_birth_date, s.study_date)
                     - CAST(strftime(s.study_date, '%m%d') < strftime(p.patient_birth_date, '%m%d') AS INTEGER) END,
           CASE right(s.patient_age, 1)
                WHEN 'Y' THEN TRY_CAST(left(s.patient_age, 3) AS INTEGER)
                WHEN 'M' THEN TRY_CAST(left(s.patient_age, 3) AS INTEGER) // 12
                WHEN 'W' THEN TRY_CAST(left(s.patient_age, 3) AS INTEGER) * 7 // 365
                WHEN 'D' THEN TRY_CAST(left(s.patient_age, 3) AS INTEGER) // 365 END
       ) AS age_years_at_study,
       CASE WHEN p.patient_birth_date IS NOT NULL AND s.study_date IS NOT NULL
                 AND s.study_date >= p.patient_birth_date THEN 'birth_date'
            WHEN TRY_CAST(left(s.patient_age, 3) AS INTEGER) IS NOT NULL
                 AND right(s.patient_age, 1) IN ('Y', 'M', 'W', 'D') THEN 'patient_age' END AS age_source,
       s.modalities_in_study,
       s.institution_name,
       s.study_description,
       s.accession_number,
       s.series_count,
       s.image_count,
       s.size_bytes,
       s.tier_state
FROM accepted_study s
LEFT JOIN patient p USING (patient_id);

-- Daily volume by study date, modality and institution: studies, series, images and bytes.
-- A study with several modalities counts once under each.
CREATE OR REPLACE TEMP VIEW daily_volume AS
SELECT s.study_date AS day,
       se.modality,
       s.institution_name,
       count(DISTINCT s.study_instance_uid) AS studies,
       count(*) AS series,
       sum(se.image_count)::BIGINT AS images,
       sum(se.size_bytes)::BIGINT AS bytes
FROM accepted_series se
JOIN accepted_study s USING (study_instance_uid)
GROUP BY ALL;

-- Modality mix per month of study date: volume by modality and its share of the month's bytes.
CREATE OR REPLACE TEMP VIEW modality_mix AS
WITH m AS (
    SELECT CAST(date_trunc('month', s.study_date) AS DATE) AS month,
           se.modality,
           count(DISTINCT s.study_instance_uid) AS studies,
           sum(se.image_count)::BIGINT AS images,
           sum(se.size_bytes)::BIGINT AS bytes
    FROM accepted_series se
    JOIN accepted_study s USING (study_instance_uid)
    GROUP BY ALL
)
SELECT month, modality, studies, images, bytes,
       round(100.0 * bytes / nullif(sum(bytes) OVER (PARTITION BY month), 0), 2) AS share_of_bytes_pct
FROM m;

-- Where each study's images are: tier state, image counts per tier, recall pin.
CREATE OR REPLACE TEMP VIEW study_tier_status AS
SELECT study_instance_uid,
       patient_id,
       study_date,
       tier_state,
       image_count,
       online_image_count,
       offline_image_count,
       online_image_count = image_count AS fully_online,
       offline_image_count = image_count AS fully_offline,
       pinned_until,
       size_bytes,
       last_received_at
FROM accepted_study;

-- Bytes of each study held in each tier (one scan of image: use for totals, not per study).
CREATE OR REPLACE TEMP VIEW study_tier_bytes AS
SELECT study_instance_uid,
       count(*) AS images,
       sum(size_bytes)::BIGINT AS bytes,
       coalesce(sum(size_bytes) FILTER (WHERE online_uri IS NOT NULL), 0)::BIGINT AS online_bytes,
       coalesce(sum(size_bytes) FILTER (WHERE offline_uri IS NOT NULL), 0)::BIGINT AS offline_bytes
FROM accepted_image
GROUP BY study_instance_uid;

-- Departmental views (include/sql/schema_departmental.sql): acquisition parameters and radiation
-- dose, over the accepted instances only (a rejected image's acquisition row and a rejected dose
-- SR's events are left out, as their instances are) and accepted studies.

-- Irradiation events of the accepted dose reports, each event once: a study whose event is
-- reported twice (a modality's report and a dose registry's copy) keeps the copy recorded first,
-- by its Irradiation Event UID (without a UID, every event of every report counts).
CREATE OR REPLACE TEMP VIEW accepted_dose_event AS
SELECT e.*
FROM dose_event e
ANTI JOIN rejection r USING (sop_instance_uid)
QUALIFY row_number() OVER (
    PARTITION BY e.study_instance_uid, coalesce(e.irradiation_event_uid, e.sop_instance_uid || ':' || e.event_ordinal)
    ORDER BY e.created_at, e.sop_instance_uid, e.event_ordinal) = 1;

-- Radiation dose per study with a dose report: irradiation events, the total DLP and largest
-- CTDIvol of its CT events, the projection events' dose-area product and dose at the reference
-- point, from the distinct events; and the totals the reports themselves state (accumulated dose
-- data), which agree with the events' unless a report is incomplete or two reports overlap.
-- DLP sums are rounded to 0.001 mGy.cm (reports give 0.01).
CREATE OR REPLACE TEMP VIEW dose_per_study AS
WITH reports AS (
    SELECT study_instance_uid, count(*) AS dose_reports,
           round(sum(dlp_total_mgycm), 3) AS reported_dlp_total_mgycm,
           sum(dose_area_product_total_gym2) AS reported_dose_area_product_total_gym2,
           sum(dose_rp_total_gy) AS reported_dose_rp_total_gy
    FROM dose_report
    ANTI JOIN rejection r USING (sop_instance_uid)
    GROUP BY study_instance_uid
), events AS (
    SELECT study_instance_uid,
           count(*) FILTER (WHERE event_kind = 'ct') AS ct_events,
           count(*) FILTER (WHERE event_kind = 'projection') AS projection_events,
           round(sum(dlp_mgycm) FILTER (WHERE event_kind = 'ct'), 3) AS dlp_total_mgycm,
           max(ctdivol_mgy) FILTER (WHERE event_kind = 'ct') AS max_ctdivol_mgy,
           sum(dose_area_product_gym2) FILTER (WHERE event_kind = 'projection') AS dose_area_product_total_gym2,
           sum(dose_rp_gy) FILTER (WHERE event_kind = 'projection') AS dose_rp_total_gy
    FROM accepted_dose_event
    GROUP BY study_instance_uid
)
SELECT s.study_instance_uid, s.patient_id, s.study_date, s.study_description, s.modalities_in_study,
       r.dose_reports,
       coalesce(e.ct_events, 0) AS ct_events,
       coalesce(e.projection_events, 0) AS projection_events,
       e.dlp_total_mgycm, r.reported_dlp_total_mgycm, e.max_ctdivol_mgy,
       e.dose_area_product_total_gym2, r.reported_dose_area_product_total_gym2,
       e.dose_rp_total_gy, r.reported_dose_rp_total_gy
FROM reports r
JOIN accepted_study s USING (study_instance_uid)
LEFT JOIN events e USING (study_instance_uid);

-- CT dose per acquisition protocol and month of study date, exam by exam as dose reference
-- levels are set: per study and protocol its CTDIvol (the mean over its acquisitions, localizers
-- left out) and its DLP (every event of the protocol, localizers included, as a report totals
-- them); then the median and 75th percentile over the month's studies.
CREATE OR REPLACE TEMP VIEW ct_dose_by_protocol AS
WITH exams AS (
    SELECT e.study_instance_uid, e.acquisition_protocol,
           avg(e.ctdivol_mgy) FILTER (WHERE e.acquisition_type IS DISTINCT FROM 'Constant Angle Acquisition')
               AS ctdivol_mgy,
           round(sum(e.dlp_mgycm), 3) AS dlp_mgycm
    FROM accepted_dose_event e
    WHERE e.event_kind = 'ct'
    GROUP BY ALL
)
SELECT CAST(date_trunc('month', s.study_date) AS DATE) AS month,
       x.acquisition_protocol,
       count(*) AS studies,
       median(x.ctdivol_mgy) AS median_ctdivol_mgy,
       quantile_cont(x.ctdivol_mgy, 0.75) AS p75_ctdivol_mgy,
       median(x.dlp_mgycm) AS median_dlp_mgycm,
       quantile_cont(x.dlp_mgycm, 0.75) AS p75_dlp_mgycm
FROM exams x
JOIN accepted_study s USING (study_instance_uid)
GROUP BY ALL;

-- CT acquisition parameters from the images' headers, per protocol name and month of study
-- date: medians over the accepted images (what the scanner recorded slice by slice).
CREATE OR REPLACE TEMP VIEW ct_acquisition_by_protocol AS
SELECT CAST(date_trunc('month', s.study_date) AS DATE) AS month,
       a.protocol_name,
       count(DISTINCT a.series_instance_uid) AS series,
       count(*) AS images,
       median(a.kvp) AS median_kvp,
       median(a.x_ray_tube_current) AS median_x_ray_tube_current,
       median(a.exposure) AS median_exposure,
       median(a.ctdivol) AS median_ctdivol,
       median(a.slice_thickness) AS median_slice_thickness
FROM ct_acquisition a
ANTI JOIN rejection r USING (sop_instance_uid)
JOIN accepted_study s USING (study_instance_uid)
GROUP BY ALL;

-- Malformed departmental values, counted: per table and keyword (or dose concept), the rows whose
-- value was malformed and left empty (their files are catalogued all the same). A data-quality
-- count of every catalogued row, rejected instances included.
CREATE OR REPLACE TEMP VIEW departmental_invalid_values AS
WITH v AS (
    SELECT 'ct_acquisition' AS table_name, unnest(invalid_values) AS keyword FROM ct_acquisition
    UNION ALL SELECT 'mr_acquisition', unnest(invalid_values) FROM mr_acquisition
    UNION ALL SELECT 'dx_exposure', unnest(invalid_values) FROM dx_exposure
    UNION ALL SELECT 'us_acquisition', unnest(invalid_values) FROM us_acquisition
    UNION ALL SELECT 'dose_report', unnest(invalid_values) FROM dose_report
    UNION ALL SELECT 'dose_event', unnest(invalid_values) FROM dose_event
)
SELECT table_name, keyword, count(*) AS rows FROM v GROUP BY ALL;
