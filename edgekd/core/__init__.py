"""Core: small utilities every stage shares, with no knowledge of the stages.

Owns: errors (``EdgekdError``, the one-line user error), fileio (atomic writes, JSON/JSONL,
hashes), units (count/shape parsing and formatting), fmt (number formatting for output), progress
(the plain progress lines any stage may print), cache (the user cache root),
checkpoint (the self-describing student checkpoint file; ``load_weights`` with an error that
says what differs) and runfolder (every path and JSON
document of a run folder, named, versioned and checked on read: the one owner of the run's
layout, shared by ship, report and run).

May import: the standard library, third-party packages, other ``edgekd.core`` modules and
``deploy`` (units: the one shape parser).
Known exception (``# layering: known exception``): ``checkpoint.load_student`` rebuilds the
student through ``edgekd.search.space``.
"""
