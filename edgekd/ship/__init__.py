"""Ship: from a trained student to something a device runs, and its host measurement.

Owns: export (ONNX export, checker, parity against PyTorch, edgekd metadata), bundle (the
device bundle: ONNX, deploy kit, profile, data), bundle_readme (the bundle's README per
profile: versions, commands, trtexec fallback), fp16 (the FP16 ONNX and its host accuracy
check against FP32), export_target (``edgekd export``:
a run, a trial or a checkpoint -> ONNX + bundle), measure (host latency through
``python -m deploy bench`` in a subprocess, reading its JSON; ``measured_latency`` of a
student spec) and calibrate (``edgekd calibrate``: export and time a set of students, or
read what a device measured, and fit the kernel table of :mod:`edgekd.search.kernel_model`).

May import: ``edgekd.core``, ``edgekd.inputs``, ``edgekd.search``, ``edgekd.distill`` and
``deploy`` (whose ``deploy.onnxmeta`` owns the ``edgekd.*`` ONNX metadata keys). Not report,
run or cli. export_target reads a run folder through ``edgekd.core.runfolder``. Inside the package the
bundle sits on top of export, fp16 and int8 (none of them imports it).
"""
