-- Record a fixity run's results (temp table `fixity_results(tier, uri, sop_instance_uid, status,
-- expected_sha256, actual_sha256, detail, repaired, repair)`) against the current catalogue: a
-- copy that moved or was purged since the run began is not a finding.
CREATE OR REPLACE TEMP TABLE fixity_current AS
SELECT r.* FROM fixity_results r
JOIN image i USING (sop_instance_uid)
WHERE (r.tier = 'online' AND i.online_uri = r.uri) OR (r.tier = 'offline' AND i.offline_uri = r.uri);

UPDATE image SET online_verified_at = $now, updated_at = now()
WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM fixity_current
                           WHERE tier = 'online' AND (status = 'ok' OR repaired));

UPDATE image SET offline_verified_at = $now, updated_at = now()
WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM fixity_current
                           WHERE tier = 'offline' AND (status = 'ok' OR repaired));

INSERT INTO fixity_finding (fixity_id, tier, kind, uri, sop_instance_uid, expected_sha256, actual_sha256, detail,
                            found_at, repaired_at, repair)
SELECT $fixity_id, tier, status, uri, sop_instance_uid, expected_sha256, actual_sha256, detail, $now,
       CASE WHEN repaired THEN $now END, repair
FROM (SELECT * FROM fixity_current WHERE status <> 'ok'
      UNION ALL BY NAME
      SELECT * FROM fixity_results WHERE status = 'orphan')
ON CONFLICT (fixity_id, tier, uri) DO NOTHING;
