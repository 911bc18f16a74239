-- One row per snapshot partition with its row count and newest change, so the snapshot
-- rewrites only partitions that changed since the last refresh.
CREATE OR REPLACE TEMP TABLE snapshot_study_year AS
SELECT study_instance_uid, coalesce(year(study_date), 0)::INTEGER AS study_year
FROM study;

CREATE OR REPLACE TEMP TABLE snapshot_stamps AS
SELECT 'patient' AS part, count(*) AS rows, max(updated_at) AS stamp FROM patient
UNION ALL
SELECT 'quarantine', count(*), max(coalesce(resubmitted_at, quarantined_at)) FROM quarantine
UNION ALL
SELECT 'ingest_batch', count(*), max(merged_at) FROM ingest_batch
UNION ALL
SELECT 'study/study_year=' || y.study_year, count(*), max(s.updated_at)
FROM study s JOIN snapshot_study_year y USING (study_instance_uid) GROUP BY y.study_year
UNION ALL
SELECT 'series/study_year=' || y.study_year, count(*), max(s.updated_at)
FROM series s JOIN snapshot_study_year y USING (study_instance_uid) GROUP BY y.study_year
UNION ALL
SELECT 'image/study_year=' || y.study_year, count(*), max(i.updated_at)
FROM image i JOIN snapshot_study_year y USING (study_instance_uid) GROUP BY y.study_year;
