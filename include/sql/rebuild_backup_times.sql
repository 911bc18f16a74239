-- pacs rebuild with a backup (attached as `bk`): what no file holds of an image the backup knows
-- (when it was received and ingested, and by which batch), so that "the first received file
-- describes the study" picks the same file as the intake did.
UPDATE rebuilt SET received_at = b.received_at, ingested_at = b.ingested_at, batch_id = b.batch_id
FROM bk.image b
WHERE rebuilt.sop_instance_uid = b.sop_instance_uid;
