-- Every online copy the catalogue records, in verification chunks of $chunk files.
SELECT (row_number() OVER (ORDER BY online_uri) - 1) // $chunk AS chunk_no,
       sop_instance_uid, online_uri AS uri, sha256, size_bytes, tier
FROM image
WHERE online_uri IS NOT NULL
ORDER BY online_uri
