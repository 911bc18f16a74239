"""Tiers: the online and offline tiers and what moves between them.

- :mod:`pacs.tiers.policy`     the lifecycle policy (retention, overrides, holds, watermarks)
- :mod:`pacs.tiers.lifecycle`  plan, migrate online → offline, switch, purge (``pacs_lifecycle``)
- :mod:`pacs.tiers.recall`     bring studies back online, verified, pinned (``pacs_recall``)
- :mod:`pacs.tiers.fixity`     verify both tiers, reconcile listings, repair (``pacs_fixity``)
"""
