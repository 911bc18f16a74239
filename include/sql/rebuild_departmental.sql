-- pacs rebuild (pacs.catalogue.rebuild), after merge_departmental.sql ran over temp table
-- `rebuilt` (exposed to it as `new_images`): a departmental row is dated as its image is, by
-- the image's ingested_at (the backup's when there is one, else the rebuild's), as the intake's
-- merge dates both with the merge time.
UPDATE ct_acquisition t SET created_at = r.ingested_at FROM rebuilt r WHERE t.sop_instance_uid = r.sop_instance_uid;
UPDATE mr_acquisition t SET created_at = r.ingested_at FROM rebuilt r WHERE t.sop_instance_uid = r.sop_instance_uid;
UPDATE dx_exposure t SET created_at = r.ingested_at FROM rebuilt r WHERE t.sop_instance_uid = r.sop_instance_uid;
UPDATE us_acquisition t SET created_at = r.ingested_at FROM rebuilt r WHERE t.sop_instance_uid = r.sop_instance_uid;
UPDATE dose_report t SET created_at = r.ingested_at FROM rebuilt r WHERE t.sop_instance_uid = r.sop_instance_uid;
UPDATE dose_event t SET created_at = r.ingested_at FROM rebuilt r WHERE t.sop_instance_uid = r.sop_instance_uid;
