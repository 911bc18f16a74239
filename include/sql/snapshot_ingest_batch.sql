SELECT * FROM ingest_batch ORDER BY merged_at, batch_id
