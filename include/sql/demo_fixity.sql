-- make demo: what the last fixity run checked and found.
SELECT online_checked, offline_checked, findings FROM fixity_run ORDER BY started_at DESC LIMIT 1
