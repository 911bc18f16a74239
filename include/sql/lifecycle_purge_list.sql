-- Online copies that may be deleted now: the image is switched to its verified offline copy
-- and its study is not pinned online at $logical_date.
SELECT i.sop_instance_uid, i.study_instance_uid, i.online_uri, i.size_bytes
FROM image i
JOIN study s USING (study_instance_uid)
WHERE i.tier = 'offline' AND i.online_uri IS NOT NULL
  AND i.offline_uri IS NOT NULL AND i.offline_verified_at IS NOT NULL
  AND (s.pinned_until IS NULL OR s.pinned_until < $logical_date)
ORDER BY i.online_uri
