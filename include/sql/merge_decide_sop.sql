-- The staged SOP instances and their lookup hash (the first step of merge_decide.sql; input:
-- `staged`): the low 64 bits of md5(sop_instance_uid), as image_sop holds them (schema.sql).
CREATE OR REPLACE TEMP TABLE merge_staged_sop AS
SELECT DISTINCT sop_instance_uid, (md5_number(sop_instance_uid) >> 64)::UBIGINT AS sop_hash
FROM staged WHERE sop_instance_uid IS NOT NULL;
