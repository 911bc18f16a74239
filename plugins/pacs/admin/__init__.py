"""Administration of the archive: identity corrections and rejections, recorded, never rewriting a file.

- :mod:`pacs.admin.corrections`  ``patient_merge`` and ``study_move``: one catalogue transaction
  each, a row of table ``correction``, the snapshot refreshed (``pacs patient merge``,
  ``pacs study move``, the ``pacs_admin`` DAG)
- :mod:`pacs.admin.rejection`    ``reject``: instances kept but out of views, plans, figures and
  recall, a row of table ``rejection`` each (``pacs reject``, the ``pacs_admin`` DAG)
- :mod:`pacs.admin.purge`        ``purge``: rejected or expired instances deleted from both tiers
  through a recorded plan, an audit row of table ``deletion`` per copy (``pacs purge``)
"""

from pacs.admin.corrections import patient_merge, study_move
from pacs.admin.purge import purge
from pacs.admin.rejection import reject

__all__ = ["patient_merge", "purge", "reject", "study_move"]
