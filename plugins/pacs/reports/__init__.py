"""Reports: capacity (volume, growth, tier utilisation, forecast, what-if, cost) and the ingest forecast.

- :mod:`pacs.reports.capacity`  the capacity report's public names, re-exported (``pacs_capacity_report``)
- :mod:`pacs.reports.settings`  the ``capacity:`` configuration section and its validation
- :mod:`pacs.reports.extract`   step 1: the catalogue extract and the date a report is computed at
- :mod:`pacs.reports.figures`   step 2: every figure from the extract (volume, tiers, forecast, what-if, cost)
- :mod:`pacs.reports.forecast`  the ingest model and the online-tier projection
- :mod:`pacs.reports.charts`    the charts as inline SVG (matplotlib)
- :mod:`pacs.reports.html`      the self-contained HTML report
- :mod:`pacs.reports.publish`   step 3: CSV, Parquet, HTML and summary.json under the reports location
- :mod:`pacs.reports.tables`    Arrow helpers: columns as numpy arrays, Parquet and CSV bytes
- :mod:`pacs.reports.units`     decimal GB/TB, the average month, bytes as text
"""
