-- The merge's candidates from the sorted index of image_sop (pacs.catalogue.sop_index; input:
-- `sop_index_hits(sop_hash, ingested_at)`, its rows for the staged hashes): what the scan of
-- merge_sop_scan.sql would give, at the cost of the batch.
CREATE OR REPLACE TEMP TABLE merge_sop_candidates AS
SELECT s.sop_instance_uid, h.ingested_at FROM sop_index_hits h JOIN merge_staged_sop s USING (sop_hash);
