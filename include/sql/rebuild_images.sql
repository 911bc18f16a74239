-- pacs rebuild (pacs.catalogue.rebuild): one row per SOP instance from every copy the tiers
-- hold. Input: view `found` over the rebuild's parts (the intake's staged columns of each file's
-- header, plus copy_tier online | offline, copy_uri, copy_offset/copy_length of a packed member,
-- hashed, problem); $now the rebuild's time. The header comes from the online copy when there is
-- one; every copy's place is kept (online_uri; offline_uri and the member's offset and length).
CREATE OR REPLACE TEMP TABLE rebuild_copies AS
SELECT * FROM found WHERE problem IS NULL;

-- SOP instances whose copies do not hold the same bytes (fixity's to judge; the online copy's
-- sha256 is catalogued).
CREATE OR REPLACE TEMP TABLE rebuild_conflicts AS
SELECT sop_instance_uid FROM rebuild_copies GROUP BY sop_instance_uid HAVING count(DISTINCT sha256) > 1;

CREATE OR REPLACE TEMP TABLE rebuilt AS
WITH best AS (
    SELECT * FROM rebuild_copies
    QUALIFY row_number() OVER (PARTITION BY sop_instance_uid
                               ORDER BY copy_tier = 'online' DESC, copy_offset IS NOT NULL, copy_uri) = 1
), online AS (
    SELECT sop_instance_uid, copy_uri FROM rebuild_copies WHERE copy_tier = 'online'
    QUALIFY row_number() OVER (PARTITION BY sop_instance_uid ORDER BY copy_uri) = 1
), offline AS (
    SELECT sop_instance_uid, copy_uri, copy_offset, copy_length FROM rebuild_copies WHERE copy_tier = 'offline'
    QUALIFY row_number() OVER (PARTITION BY sop_instance_uid ORDER BY copy_offset IS NOT NULL, copy_uri) = 1
)
SELECT b.* EXCLUDE (copy_tier, copy_uri, copy_offset, copy_length, hashed, problem, dst_uri),
       n.copy_uri AS dst_uri,
       n.copy_uri AS online_uri,
       f.copy_uri AS offline_uri,
       f.copy_offset AS offline_offset,
       f.copy_length AS offline_length,
       CASE WHEN n.copy_uri IS NOT NULL THEN $now::TIMESTAMPTZ END AS online_verified_at,
       CASE WHEN f.copy_uri IS NOT NULL THEN $now::TIMESTAMPTZ END AS offline_verified_at,
       $now::TIMESTAMPTZ AS ingested_at
FROM best b
LEFT JOIN online n USING (sop_instance_uid)
LEFT JOIN offline f USING (sop_instance_uid);
