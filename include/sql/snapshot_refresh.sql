-- The snapshot refresh's statements (pacs.catalogue.snapshot_refresh). `{table}`, `{row_key}`, `{cluster}`,
-- `{marker}`, `{created}` and `{part}` are identifiers and expressions of the fixed table specs in
-- snapshot_refresh.py (TABLES), never values; values are $parameters.

-- name: changed
-- The rows of {table} changed since $since (a zone-map scan: only recently written row groups
-- are read), with the partition each belongs in now, its cluster key, and whether it is new
-- (created after the previous refresh began, so no published file can hold it).
CREATE OR REPLACE TEMP TABLE snap_changed AS
SELECT t.*, {part} AS _part, t.{cluster} AS _cluster, {created} > $since AS _new
FROM {table} t {join}
WHERE {marker} > $since;

-- name: moved
-- Rows of the studies whose partition changed (a study date filled in later): their series and
-- images move with them although those rows did not change.
INSERT INTO snap_changed
SELECT t.*, {part} AS _part, t.{cluster} AS _cluster, false AS _new
FROM {table} t {join}
WHERE t.study_instance_uid IN (SELECT key FROM snap_moved)
  AND t.{row_key} NOT IN (SELECT {row_key} FROM snap_changed);

-- name: moved_studies
-- Studies whose snapshot partition is not the one they belong in now.
CREATE OR REPLACE TEMP TABLE snap_moved AS
SELECT DISTINCT c._cluster AS key
FROM snap_changed c
JOIN snapshot_key k ON k.tbl = 'study' AND k.key = c._cluster
JOIN snapshot_file f ON f.name = k.name
WHERE f.part <> c._part;

-- name: affected
-- The published files that may hold an older version of a changed row: those holding its
-- cluster key (a new row has no older version), or a row deleted from the catalogue since
-- (snapshot_removed), with their partitions.
SELECT DISTINCT f.name, f.part, f.rows
FROM snapshot_key k JOIN snapshot_file f ON f.name = k.name
WHERE k.tbl = $tbl AND k.key IN (SELECT DISTINCT _cluster FROM snap_changed WHERE NOT _new
                                 UNION SELECT cluster FROM snapshot_removed WHERE tbl = $tbl)
ORDER BY f.name;

-- name: small
-- Every published file of a partition under $rows rows (compaction candidates).
SELECT name, rows FROM snapshot_file WHERE tbl = $tbl AND part = $part AND rows < $rows ORDER BY name;

-- name: parts_changed
SELECT DISTINCT _part FROM snap_changed ORDER BY 1;

-- name: full_parts
-- Every partition of {table} in the catalogue (a full rebuild).
SELECT DISTINCT {part} AS _part FROM {table} t {join} ORDER BY 1;

-- name: full_rows
-- The rows of one partition of {table}, from the catalogue (a full rebuild).
SELECT t.*, t.{cluster} AS _cluster FROM {table} t {join} WHERE {part} = $part ORDER BY {order};
