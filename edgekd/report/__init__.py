"""Report: summary.json, report.md, report.html and the plots, rebuilt from a run folder's files.

Owns: report (summary.json, Markdown, HTML), measured (a model's latency and size from the run's
measurements), int8_rows (the INT8 entries), tables (the students table and the words), plots
(the figures, one style per method) and merge (device measurements checked against the run's
profile, then copied into the run).

May import: ``edgekd.core``, ``edgekd.inputs``, ``edgekd.search``, ``edgekd.distill``,
``edgekd.ship``. Not run or cli. It reads the run folder through ``edgekd.core.runfolder``.
"""
