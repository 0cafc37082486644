"""edgekd's on-device deploy kit: ``python -m deploy build | bench | profile | check``.

Imports only the standard library, numpy, onnxruntime, tensorrt (8.5-11.x) and, where no
system libcudart is found for ctypes, cuda-python (the last three lazily, where used): it runs
on a Jetson with JetPack's system Python. Never torch, never
edgekd (a test walks every module's imports). It is also the project's one timing routine:
the host measures through it in a subprocess (edgekd.measure), the device runs it directly.
"""

__all__ = ["MEASUREMENT_FORMAT", "PROFILE_FORMAT"]

MEASUREMENT_FORMAT = "edgekd.measurement/1"
PROFILE_FORMAT = "edgekd.layer-profile/1"
