"""Analysts: SQL over the catalogue, the analysts' views and de-identified views.

- :mod:`pacs.analyst.query`  ``pacs query``: snapshot reads, ``--live``, ``--deidentified``, output
- :mod:`pacs.analyst.views`  the analysts' views
- :mod:`pacs.analyst.deid`   keyed pseudonyms and the de-identified views
"""
