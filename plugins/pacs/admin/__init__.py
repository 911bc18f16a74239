"""Administration of the archive: identity corrections, recorded, never rewriting a file.

- :mod:`pacs.admin.corrections`  ``patient_merge`` and ``study_move``: one catalogue transaction
  each, a row of table ``correction``, the snapshot refreshed (``pacs patient merge``,
  ``pacs study move``, the ``pacs_admin`` DAG)
"""

from pacs.admin.corrections import patient_merge, study_move

__all__ = ["patient_merge", "study_move"]
