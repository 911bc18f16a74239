-- Analysts' views for common questions. Created as TEMP views on every connection `pacs query`
-- opens (the Parquet snapshot's in-memory database, or the live catalogue opened read-only), over
-- the tables patient, study, series and image. These views show patient data: for analysts
-- without PHI access use the de-identified views (views_deid.sql, `pacs query --deidentified`).

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
FROM study s
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
FROM series se
JOIN study s USING (study_instance_uid)
GROUP BY ALL;

-- Modality mix per month of study date: volume by modality and its share of the month's bytes.
CREATE OR REPLACE TEMP VIEW modality_mix AS
WITH m AS (
    SELECT CAST(date_trunc('month', s.study_date) AS DATE) AS month,
           se.modality,
           count(DISTINCT s.study_instance_uid) AS studies,
           sum(se.image_count)::BIGINT AS images,
           sum(se.size_bytes)::BIGINT AS bytes
    FROM series se
    JOIN study s USING (study_instance_uid)
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
FROM study;

-- Bytes of each study held in each tier (one scan of image: use for totals, not per study).
CREATE OR REPLACE TEMP VIEW study_tier_bytes AS
SELECT study_instance_uid,
       count(*) AS images,
       sum(size_bytes)::BIGINT AS bytes,
       coalesce(sum(size_bytes) FILTER (WHERE online_uri IS NOT NULL), 0)::BIGINT AS online_bytes,
       coalesce(sum(size_bytes) FILTER (WHERE offline_uri IS NOT NULL), 0)::BIGINT AS offline_bytes
FROM image
GROUP BY study_instance_uid;
