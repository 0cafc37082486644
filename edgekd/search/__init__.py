"""Search: which thin, deep students fit a device budget.

Owns: space (StudentSpec, enumeration, building the nn.Module), families (the student-family
registry: plain, residual, dwsep, mbconv and any registered one) and blocks (their torch
modules), cost (MACs, params and the layer table), latency (the roofline and the per-kind
calibration), kernels and kernel_model (the fused-kernel latency model and its per-device
table), search (budget filter, Pareto front, shortlist, ``candidates.jsonl``) and config
(SearchConfig: every default of a search, once).

May import: ``edgekd.core``, ``edgekd.inputs``. Measuring a student on the host belongs to
``edgekd.ship`` (``measure.measured_latency``, ``calibrate``); search takes the measurer as an
argument instead of importing it.

Importing the package registers the ``reference`` family (:mod:`edgekd.search.reference`, the
torchvision models; torch is imported when one is built), so the family registry is full
whichever module of the package is imported first; the registry itself imports no family module.
"""

from edgekd.search import reference as _reference  # noqa: F401  (registers the reference family)
