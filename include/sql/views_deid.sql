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

-- Departmental views: acquisition parameters per image and radiation dose per study and event,
-- with pseudonymous study and series keys and the study's year only (views.sql leaves rejected
-- instances out). Dropped besides what is dropped above: UIDs of instances, dose reports and
-- irradiation events, and protocol names (free text chosen by a site) except in the aggregate
-- deid_ct_dose_by_protocol, whose cells of fewer than 11 studies are left out.
CREATE OR REPLACE TEMP VIEW deid_ct_acquisition AS
SELECT pacs_pseudonym('series', a.series_instance_uid) AS series_key,
       pacs_pseudonym('study', a.study_instance_uid) AS study_key,
       year(s.study_date) AS study_year,
       a.kvp, a.x_ray_tube_current, a.exposure, a.ctdivol, a.slice_thickness, a.convolution_kernel
FROM ct_acquisition a
ANTI JOIN rejection r USING (sop_instance_uid)
JOIN accepted_study s USING (study_instance_uid);

CREATE OR REPLACE TEMP VIEW deid_mr_acquisition AS
SELECT pacs_pseudonym('series', a.series_instance_uid) AS series_key,
       pacs_pseudonym('study', a.study_instance_uid) AS study_key,
       year(s.study_date) AS study_year,
       a.magnetic_field_strength, a.scanning_sequence, a.sequence_variant, a.repetition_time, a.echo_time,
       a.inversion_time, a.flip_angle
FROM mr_acquisition a
ANTI JOIN rejection r USING (sop_instance_uid)
JOIN accepted_study s USING (study_instance_uid);

CREATE OR REPLACE TEMP VIEW deid_dx_exposure AS
SELECT pacs_pseudonym('series', a.series_instance_uid) AS series_key,
       pacs_pseudonym('study', a.study_instance_uid) AS study_key,
       year(s.study_date) AS study_year,
       a.kvp, a.exposure_in_uas, a.distance_source_to_detector, a.body_part_thickness, a.entrance_dose_in_mgy,
       a.organ_dose
FROM dx_exposure a
ANTI JOIN rejection r USING (sop_instance_uid)
JOIN accepted_study s USING (study_instance_uid);

CREATE OR REPLACE TEMP VIEW deid_us_acquisition AS
SELECT pacs_pseudonym('series', a.series_instance_uid) AS series_key,
       pacs_pseudonym('study', a.study_instance_uid) AS study_key,
       year(s.study_date) AS study_year,
       a.transducer_type, a.region_count, a.physical_units_x_direction, a.physical_units_y_direction,
       a.transducer_frequency
FROM us_acquisition a
ANTI JOIN rejection r USING (sop_instance_uid)
JOIN accepted_study s USING (study_instance_uid);

CREATE OR REPLACE TEMP VIEW deid_dose_event AS
SELECT pacs_pseudonym('study', e.study_instance_uid) AS study_key,
       year(s.study_date) AS study_year,
       e.event_ordinal, e.event_kind, e.acquisition_type, e.target_region, e.target_region_code,
       e.ctdivol_mgy, e.dlp_mgycm, e.scanning_length_mm, e.dose_area_product_gym2, e.dose_rp_gy
FROM accepted_dose_event e
JOIN accepted_study s USING (study_instance_uid);

CREATE OR REPLACE TEMP VIEW deid_dose_per_study AS
SELECT pacs_pseudonym('study', d.study_instance_uid) AS study_key,
       pacs_pseudonym('patient', d.patient_id) AS patient_key,
       year(d.study_date) AS study_year,
       least(p.age_years_at_study, 90) AS age_years,
       p.patient_sex,
       d.modalities_in_study, d.dose_reports, d.ct_events, d.projection_events,
       d.dlp_total_mgycm, d.reported_dlp_total_mgycm, d.max_ctdivol_mgy,
       d.dose_area_product_total_gym2, d.reported_dose_area_product_total_gym2,
       d.dose_rp_total_gy, d.reported_dose_rp_total_gy
FROM dose_per_study d
JOIN study_patient p USING (study_instance_uid);

CREATE OR REPLACE TEMP VIEW deid_ct_dose_by_protocol AS
SELECT * FROM ct_dose_by_protocol
WHERE studies >= 11;
