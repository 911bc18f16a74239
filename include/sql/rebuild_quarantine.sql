-- pacs rebuild: the quarantine from its sidecars (view `found_quarantine`: one row per sidecar,
-- with the quarantined file beside it). UIDs, resubmissions and the catalogue's own time come
-- from a backup when there is one (rebuild_from_backup.sql).
INSERT INTO quarantine (quarantine_id, batch_id, source_uri, quarantine_uri, sidecar_uri, reason, detail,
                        sha256, size_bytes, quarantined_at)
SELECT quarantine_id, batch_id, source_uri, quarantine_uri, sidecar_uri, reason, detail, sha256, size_bytes,
       quarantined_at
FROM found_quarantine
QUALIFY row_number() OVER (PARTITION BY quarantine_id ORDER BY sidecar_uri) = 1;
