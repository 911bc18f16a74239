-- The end of a merge (pacs.catalogue.merge.apply): drop its working tables, so their memory is
-- not held until the next merge replaces them.
DROP TABLE IF EXISTS temp.decided;
DROP TABLE IF EXISTS temp.merge_staged_sop;
DROP TABLE IF EXISTS temp.merge_sop_candidates;
DROP TABLE IF EXISTS temp.merge_known_image;
DROP TABLE IF EXISTS temp.merge_known_study;
DROP TABLE IF EXISTS temp.merge_effective_patient;
DROP TABLE IF EXISTS temp.merge_series_delta;
DROP TABLE IF EXISTS temp.merge_new_studies;
DROP TABLE IF EXISTS temp.touched_studies;
