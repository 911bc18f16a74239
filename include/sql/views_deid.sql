-- De-identified views for analysts without PHI access (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)).
-- Built on views.sql. pacs_pseudonym(kind, value) is a keyed hash (HMAC-SHA256 with the key in
-- $PACS_PSEUDONYM_KEY) that `pacs query` registers; with --deidentified these views are
-- materialised into a fresh database without the function, the raw tables or file access.
--
-- Kept: pseudonymous keys (patient, study, series), sex, age in whole years at the study (90 = 90
-- or older), years of dates (never day or month of an individual's date), modality, body part,
-- manufacturer and model, counts, bytes, tier state.
-- Dropped: names, patient IDs, birth dates, study/series/SOP UIDs, accession numbers, study IDs,
-- full dates and times, referring physician, institution and station names (they locate
-- the patient's care), free-text descriptions (they can hold names), file URIs and checksums.
-- Aggregates by day or month (deid_daily_volume, deid_modality_mix) are counts, not records of
-- an individual; cells of fewer than 11 studies are suppressed (left out), as in the usual
-- small-cell rule for publishing counts, so a rare exam on a given day cannot single anyone out.
-- Rejected instances (table rejection) are left out as in views.sql; rejections are shown only
-- as counts (deid_rejections: by code and year, the same small-cell rule), never which study,
-- series or instance was rejected.

-- A patient's studies and their first and last years count accepted studies only; a patient
-- whose studies are all rejected is left out.
CREATE OR REPLACE TEMP VIEW deid_patient AS
WITH accepted AS (
    SELECT patient_id, count(*) AS study_count, min(study_date) AS first_study_date,
           max(study_date) AS last_study_date
    FROM accepted_study
    GROUP BY patient_id
)
SELECT pacs_pseudonym('patient', p.patient_id) AS patient_key,
       p.patient_sex,
       coalesce(a.study_count, 0)::INTEGER AS study_count,
       year(a.first_study_date) AS first_study_year,
       year(a.last_study_date) AS last_study_year
FROM patient p
LEFT JOIN accepted a USING (patient_id)
WHERE a.patient_id IS NOT NULL OR p.study_count = 0;

CREATE OR REPLACE TEMP VIEW deid_study AS
SELECT pacs_pseudonym('study', study_instance_uid) AS study_key,
       pacs_pseudonym('patient', patient_id) AS patient_key,
       study_year,
       least(age_years_at_study, 90) AS age_years,
       patient_sex,
       modalities_in_study,
       series_count,
       image_count,
       size_bytes,
       tier_state
FROM study_patient;

CREATE OR REPLACE TEMP VIEW deid_series AS
SELECT pacs_pseudonym('series', se.series_instance_uid) AS series_key,
       pacs_pseudonym('study', se.study_instance_uid) AS study_key,
       year(s.study_date) AS study_year,
       se.modality,
       se.body_part_examined,
       se.manufacturer,
       se.manufacturer_model_name,
       se.image_count,
       se.size_bytes
FROM accepted_series se
JOIN study s USING (study_instance_uid);

CREATE OR REPLACE TEMP VIEW deid_daily_volume AS
SELECT day, modality, sum(studies)::BIGINT AS studies, sum(series)::BIGINT AS series,
       sum(images)::BIGINT AS images, sum(bytes)::BIGINT AS bytes
FROM daily_volume
GROUP BY ALL
HAVING sum(studies) >= 11;

CREATE OR REPLACE TEMP VIEW deid_modality_mix AS
SELECT * FROM modality_mix
WHERE studies >= 11;

-- Rejections as counts only: instances and studies rejected, by IOCM code, source and the year
-- of the rejection; cells of fewer than 11 studies are left out.
CREATE OR REPLACE TEMP VIEW deid_rejections AS
SELECT code, meaning, source, year(rejected_at) AS rejected_year,
       count(*) AS instances,
       count(DISTINCT study_instance_uid) AS studies
FROM rejection
GROUP BY ALL
HAVING count(DISTINCT study_instance_uid) >= 11;
