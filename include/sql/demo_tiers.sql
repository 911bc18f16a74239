-- make demo: bytes per tier and studies offline (pacs.demo).
SELECT coalesce(sum(size_bytes) FILTER (WHERE online_uri IS NOT NULL), 0),
       coalesce(sum(size_bytes) FILTER (WHERE offline_uri IS NOT NULL), 0),
       (SELECT count(*) FROM study WHERE tier_state = 'offline'),
       (SELECT count(*) FROM study)
FROM image
