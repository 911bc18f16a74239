-- The offline objects due for verification this run: never-verified first, then the longest
-- unverified, $share objects in all (a packed series tar is one object), in chunks of $chunk.
WITH objects AS (
    SELECT offline_uri, min(coalesce(offline_verified_at, TIMESTAMPTZ '1970-01-01')) AS oldest
    FROM image WHERE offline_uri IS NOT NULL
    GROUP BY offline_uri
),
due AS (
    SELECT offline_uri, (row_number() OVER (ORDER BY oldest, offline_uri) - 1) // $chunk AS chunk_no
    FROM objects
    ORDER BY oldest, offline_uri
    LIMIT $share
)
SELECT d.chunk_no, i.sop_instance_uid, i.offline_uri AS uri, i.sha256, i.size_bytes, i.offline_offset,
       i.offline_length
FROM due d JOIN image i USING (offline_uri)
ORDER BY d.chunk_no, i.offline_uri, i.offline_offset
