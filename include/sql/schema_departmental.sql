-- Departmental tables: acquisition parameters per modality and radiation dose, filled by the
-- merge from the header the intake already read (include/sql/merge_departmental.sql;
-- pacs.dicom.acquisition, pacs.dicom.dose_sr). Idempotent, run at every open.
--
-- One row per image (sop_instance_uid), with its series and study for joins: the values are
-- per image in the header and vary within a series (tube current modulation, multi-echo MR).
-- Columns are the DICOM keywords in snake_case, in DICOM's units (pacs.dicom.acquisition).
-- invalid_values lists the keywords whose values were malformed and left empty (the image is
-- catalogued all the same). Rows are written with their image and never updated; `pacs purge`
-- deletes them with it (purge_commit.sql). Rejected instances stay here but are left out of the
-- views (views.sql), as their images are. No PRIMARY KEY index, as for image (schema.sql): the
-- merge inserts only rows of images it has just catalogued; `pacs check` asserts uniqueness.

CREATE TABLE IF NOT EXISTS ct_acquisition (
    sop_instance_uid    VARCHAR NOT NULL,
    series_instance_uid VARCHAR NOT NULL,
    study_instance_uid  VARCHAR NOT NULL,
    kvp                 DOUBLE,    -- kV
    x_ray_tube_current  DOUBLE,    -- mA
    exposure            DOUBLE,    -- mAs
    ctdivol             DOUBLE,    -- mGy
    slice_thickness     DOUBLE,    -- mm
    convolution_kernel  VARCHAR,   -- several values joined with \
    protocol_name       VARCHAR,
    invalid_values      VARCHAR[] NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS mr_acquisition (
    sop_instance_uid        VARCHAR NOT NULL,
    series_instance_uid     VARCHAR NOT NULL,
    study_instance_uid      VARCHAR NOT NULL,
    magnetic_field_strength DOUBLE,   -- T
    scanning_sequence       VARCHAR,  -- e.g. SE, GR, IR, EP (several joined with \)
    sequence_variant        VARCHAR,  -- e.g. SK\SP
    repetition_time         DOUBLE,   -- ms
    echo_time               DOUBLE,   -- ms
    inversion_time          DOUBLE,   -- ms
    flip_angle              DOUBLE,   -- degrees
    invalid_values          VARCHAR[] NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);

-- Projection radiography: CR, DX and MG.
CREATE TABLE IF NOT EXISTS dx_exposure (
    sop_instance_uid            VARCHAR NOT NULL,
    series_instance_uid         VARCHAR NOT NULL,
    study_instance_uid          VARCHAR NOT NULL,
    kvp                         DOUBLE,   -- kV
    exposure_in_uas             DOUBLE,   -- µAs
    distance_source_to_detector DOUBLE,   -- mm
    body_part_thickness         DOUBLE,   -- mm
    entrance_dose_in_mgy        DOUBLE,   -- mGy
    organ_dose                  DOUBLE,   -- dGy (for MG: the mean glandular dose)
    invalid_values              VARCHAR[] NOT NULL,
    created_at                  TIMESTAMPTZ NOT NULL,
    updated_at                  TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS us_acquisition (
    sop_instance_uid           VARCHAR NOT NULL,
    series_instance_uid        VARCHAR NOT NULL,
    study_instance_uid         VARCHAR NOT NULL,
    transducer_type            VARCHAR,    -- e.g. CURVED LINEAR, LINEAR, SECTOR_PHASED
    region_count               INTEGER,    -- items of the Sequence of Ultrasound Regions
    physical_units_x_direction VARCHAR[],  -- per region: cm, seconds, hertz, cm/sec, ...
    physical_units_y_direction VARCHAR[],
    transducer_frequency       DOUBLE,     -- kHz, the first region's that has one
    invalid_values             VARCHAR[] NOT NULL,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

-- One row per Radiation Dose SR (X-Ray Radiation Dose SR, TID 10011 CT / TID 10001 projection):
-- the totals the report itself states (accumulated dose data; summed over acquisition planes).
CREATE TABLE IF NOT EXISTS dose_report (
    sop_instance_uid             VARCHAR NOT NULL,   -- the SR
    series_instance_uid          VARCHAR NOT NULL,
    study_instance_uid           VARCHAR NOT NULL,   -- the study it reports on
    report_kind                  VARCHAR,            -- ct | projection
    template_id                  VARCHAR,            -- 10011 | 10001
    event_count                  INTEGER NOT NULL,   -- irradiation events read (rows of dose_event)
    reported_event_count         INTEGER,            -- Total Number of Irradiation Events (113812)
    dlp_total_mgycm              DOUBLE,             -- CT Dose Length Product Total (113813)
    dose_area_product_total_gym2 DOUBLE,             -- Dose Area Product Total (113722)
    dose_rp_total_gy             DOUBLE,             -- Dose (RP) Total (113725)
    invalid_values               VARCHAR[] NOT NULL,
    created_at                   TIMESTAMPTZ NOT NULL,
    updated_at                   TIMESTAMPTZ NOT NULL
);

-- One row per irradiation event (TID 10013 CT / TID 10003 projection), keyed by the SR and the
-- event's ordinal in it; the event's own UID (113769) tells the same event in two reports apart.
CREATE TABLE IF NOT EXISTS dose_event (
    sop_instance_uid       VARCHAR NOT NULL,   -- the SR
    event_ordinal          INTEGER NOT NULL,   -- 1, 2, ... in document order
    irradiation_event_uid  VARCHAR,
    series_instance_uid    VARCHAR NOT NULL,
    study_instance_uid     VARCHAR NOT NULL,
    event_kind             VARCHAR NOT NULL,   -- ct | projection
    acquisition_type       VARCHAR,            -- CT Acquisition Type / Irradiation Event Type (meaning)
    acquisition_protocol   VARCHAR,            -- 125203
    target_region          VARCHAR,            -- 123014, its code meaning
    target_region_code     VARCHAR,            -- scheme:value, e.g. SCT:51185008
    ctdivol_mgy            DOUBLE,             -- Mean CTDIvol (113830)
    dlp_mgycm              DOUBLE,             -- DLP (113838)
    scanning_length_mm     DOUBLE,             -- 113825
    dose_area_product_gym2 DOUBLE,             -- 122130
    dose_rp_gy             DOUBLE,             -- Dose (RP) (113738)
    invalid_values         VARCHAR[] NOT NULL,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);
