"""Search: which thin, deep students fit a device budget.

Owns: space (StudentSpec, the student families, enumeration, building the nn.Module), cost
(MACs and params, the latency model: roofline, calibration, measured table) and search (budget
filter, Pareto front, shortlist, ``candidates.jsonl``).

May import: ``edgekd.core``, ``edgekd.inputs``. Known exception (``# layering: TODO issue 10``):
``cost.measured_latency`` exports and times a student through ``edgekd.ship`` (export, measure).
"""
