"""Report: summary.json, report.md, report.html and the plots, rebuilt from a run folder's files.

Owns: report (summary.json, Markdown, HTML), plots (the figures, one style per method) and
merge (device measurements checked against the run's profile, then copied into the run).

May import: ``edgekd.core``, ``edgekd.inputs``, ``edgekd.search``, ``edgekd.distill``,
``edgekd.ship``. Not run or cli. It reads the run folder through ``edgekd.core.runfolder``.
"""
