-- The merge's candidates from image_sop itself (merge_decide.sql): a scan of 16 bytes per
-- catalogued image, used when the sorted index (pacs.catalogue.sop_index) cannot be had.
CREATE OR REPLACE TEMP TABLE merge_sop_candidates AS
SELECT s.sop_instance_uid, k.ingested_at FROM image_sop k JOIN merge_staged_sop s USING (sop_hash);
