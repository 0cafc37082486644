"""Report: summary.json, report.md, report.html and the plots, rebuilt from a run folder's files.

Owns: report (summary.json, Markdown, HTML) and plots (the figures, one style per method).

May import: ``edgekd.core``, ``edgekd.inputs``, ``edgekd.search``, ``edgekd.distill``,
``edgekd.ship``. Not run or cli. It reads the run folder through ``edgekd.core.runfolder``.
"""
