-- Every path the catalogue knows in a tier (for the listing reconcile).
SELECT DISTINCT online_uri AS uri FROM image WHERE online_uri IS NOT NULL AND $tier = 'online'
UNION ALL
SELECT DISTINCT offline_uri FROM image WHERE offline_uri IS NOT NULL AND $tier = 'offline'
