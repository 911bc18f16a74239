-- Departmental rows of the newly catalogued files (Arrow table `new_images`, after
-- merge_apply.sql catalogued them), inside the merge's transaction: the columns `acquisition`
-- (JSON {"table": ..., <column>: value, ..., "invalid": [keyword, ...]}; pacs.dicom.acquisition)
-- and `dose_report` (JSON of a dose SR's totals and events; pacs.dicom.dose_sr), NULL for files
-- without. Reads only this merge's rows (cost follows the batch); the files are new to the
-- catalogue, so none of their rows exists yet. Run only when one of the columns has a value
-- (pacs.catalogue.merge.apply). $now is the merge time; updated_at is now(), as merge_apply.sql.
-- Each JSON text is parsed once, into a STRUCT of every table's columns (a field its table does
-- not have stays NULL): extracting field by field would parse each text once per column.
CREATE OR REPLACE TEMP TABLE merge_acquisition AS
SELECT sop_instance_uid, series_instance_uid, study_instance_uid,
       from_json(acquisition, '{"table": "VARCHAR", "kvp": "DOUBLE", "x_ray_tube_current": "DOUBLE",
           "exposure": "DOUBLE", "ctdivol": "DOUBLE", "slice_thickness": "DOUBLE", "convolution_kernel": "VARCHAR",
           "protocol_name": "VARCHAR", "magnetic_field_strength": "DOUBLE", "scanning_sequence": "VARCHAR",
           "sequence_variant": "VARCHAR", "repetition_time": "DOUBLE", "echo_time": "DOUBLE",
           "inversion_time": "DOUBLE", "flip_angle": "DOUBLE", "exposure_in_uas": "DOUBLE",
           "distance_source_to_detector": "DOUBLE", "body_part_thickness": "DOUBLE",
           "entrance_dose_in_mgy": "DOUBLE", "organ_dose": "DOUBLE", "transducer_type": "VARCHAR",
           "region_count": "INTEGER", "physical_units_x_direction": ["VARCHAR"],
           "physical_units_y_direction": ["VARCHAR"], "transducer_frequency": "DOUBLE",
           "invalid": ["VARCHAR"]}') AS a
FROM new_images
WHERE acquisition IS NOT NULL;

INSERT INTO ct_acquisition (sop_instance_uid, series_instance_uid, study_instance_uid, kvp, x_ray_tube_current,
                            exposure, ctdivol, slice_thickness, convolution_kernel, protocol_name, invalid_values,
                            created_at, updated_at)
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, a.kvp, a.x_ray_tube_current, a.exposure,
       a.ctdivol, a.slice_thickness, a.convolution_kernel, a.protocol_name, coalesce(a.invalid, []), $now, now()
FROM merge_acquisition
WHERE a.table = 'ct_acquisition';

INSERT INTO mr_acquisition (sop_instance_uid, series_instance_uid, study_instance_uid, magnetic_field_strength,
                            scanning_sequence, sequence_variant, repetition_time, echo_time, inversion_time,
                            flip_angle, invalid_values, created_at, updated_at)
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, a.magnetic_field_strength, a.scanning_sequence,
       a.sequence_variant, a.repetition_time, a.echo_time, a.inversion_time, a.flip_angle, coalesce(a.invalid, []),
       $now, now()
FROM merge_acquisition
WHERE a.table = 'mr_acquisition';

INSERT INTO dx_exposure (sop_instance_uid, series_instance_uid, study_instance_uid, kvp, exposure_in_uas,
                         distance_source_to_detector, body_part_thickness, entrance_dose_in_mgy, organ_dose,
                         invalid_values, created_at, updated_at)
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, a.kvp, a.exposure_in_uas,
       a.distance_source_to_detector, a.body_part_thickness, a.entrance_dose_in_mgy, a.organ_dose,
       coalesce(a.invalid, []), $now, now()
FROM merge_acquisition
WHERE a.table = 'dx_exposure';

INSERT INTO us_acquisition (sop_instance_uid, series_instance_uid, study_instance_uid, transducer_type,
                            region_count, physical_units_x_direction, physical_units_y_direction,
                            transducer_frequency, invalid_values, created_at, updated_at)
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, a.transducer_type, a.region_count,
       a.physical_units_x_direction, a.physical_units_y_direction, a.transducer_frequency, coalesce(a.invalid, []),
       $now, now()
FROM merge_acquisition
WHERE a.table = 'us_acquisition';

CREATE OR REPLACE TEMP TABLE merge_dose AS
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, dose_report::JSON AS d
FROM new_images
WHERE dose_report IS NOT NULL;

INSERT INTO dose_report (sop_instance_uid, series_instance_uid, study_instance_uid, report_kind, template_id,
                         event_count, reported_event_count, dlp_total_mgycm, dose_area_product_total_gym2,
                         dose_rp_total_gy, invalid_values, created_at, updated_at)
SELECT sop_instance_uid, series_instance_uid, study_instance_uid, d->>'kind', d->>'template',
       coalesce((d->>'event_count')::INTEGER, 0), TRY_CAST((d->>'reported_event_count')::DOUBLE AS INTEGER),
       (d->>'dlp_total_mgycm')::DOUBLE, (d->>'dose_area_product_total_gym2')::DOUBLE,
       (d->>'dose_rp_total_gy')::DOUBLE,
       coalesce(from_json(json_extract(d, '$.invalid'), '["VARCHAR"]'), []::VARCHAR[]), $now, now()
FROM merge_dose;

INSERT INTO dose_event (sop_instance_uid, event_ordinal, irradiation_event_uid, series_instance_uid,
                        study_instance_uid, event_kind, acquisition_type, acquisition_protocol, target_region,
                        target_region_code, ctdivol_mgy, dlp_mgycm, scanning_length_mm, dose_area_product_gym2,
                        dose_rp_gy, invalid_values, created_at, updated_at)
WITH events AS (
    SELECT sop_instance_uid, series_instance_uid, study_instance_uid,
           unnest(from_json(json_extract(d, '$.events'), '["JSON"]')) AS e
    FROM merge_dose
)
SELECT sop_instance_uid, (e->>'ordinal')::INTEGER, e->>'irradiation_event_uid', series_instance_uid,
       study_instance_uid, e->>'event_kind', e->>'acquisition_type', e->>'acquisition_protocol',
       e->>'target_region', e->>'target_region_code', (e->>'ctdivol_mgy')::DOUBLE, (e->>'dlp_mgycm')::DOUBLE,
       (e->>'scanning_length_mm')::DOUBLE, (e->>'dose_area_product_gym2')::DOUBLE, (e->>'dose_rp_gy')::DOUBLE,
       coalesce(from_json(json_extract(e, '$.invalid'), '["VARCHAR"]'), []::VARCHAR[]), $now, now()
FROM events;

DROP TABLE IF EXISTS temp.merge_acquisition;
DROP TABLE IF EXISTS temp.merge_dose;
