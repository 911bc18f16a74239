-- `pacs summary`: rows of each departmental table (schema_departmental.sql), and those with a
-- malformed value left empty (counts only, no patient data).
SELECT 'ct_acquisition' AS table_name, count(*) AS rows, count(*) FILTER (WHERE len(invalid_values) > 0) AS malformed
FROM ct_acquisition
UNION ALL SELECT 'mr_acquisition', count(*), count(*) FILTER (WHERE len(invalid_values) > 0) FROM mr_acquisition
UNION ALL SELECT 'dx_exposure', count(*), count(*) FILTER (WHERE len(invalid_values) > 0) FROM dx_exposure
UNION ALL SELECT 'us_acquisition', count(*), count(*) FILTER (WHERE len(invalid_values) > 0) FROM us_acquisition
UNION ALL SELECT 'dose_report', count(*), count(*) FILTER (WHERE len(invalid_values) > 0) FROM dose_report
UNION ALL SELECT 'dose_event', count(*), count(*) FILTER (WHERE len(invalid_values) > 0) FROM dose_event;
