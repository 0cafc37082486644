"""Run: one compress run end to end, and its run folder.

Owns: pipeline (``compress``: search -> successive halving -> final training -> export ->
measure -> report -> bundle), config (CompressConfig and its defaults), setup (the inputs of a
run, loaded and checked; its identity), ship_stages (teacher.json, export, host measurement and
bundle of a run), halving (the successive-halving scheduler), executors (local and
Ray trial executors), preflight (the checks compress makes before training or run.json), rundir (opening a run: identity, resume checks, the lock), repair (damaged run files on resume) and
progress (the live view of a search).

May import: every stage (``edgekd.core``, ``inputs``, ``search``, ``distill``, ``ship``,
``report``). Not cli.
"""
