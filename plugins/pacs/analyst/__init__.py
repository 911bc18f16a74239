"""Analysts: SQL over the catalogue, the analysts' views and de-identified views.

- :mod:`pacs.analyst.query`  ``pacs query``: snapshot reads, ``--live``, ``--deidentified``, output
"""
