"""Inputs: what a run starts from.

Owns: profiles (DeviceProfile: load and validate device TOML files), data (the data set type,
ImageDataset, and its checks), loaders (data sets from a ``--data`` spec; images:
image folders and torchvision sets), logits (the teacher-output cache), teachers
(load a teacher in any supported format, fingerprints) and builtin_teacher (the built-in CNN,
its training recipe and its cache file; it is trained by the distill stage, inputs only loads).

May import: ``edgekd.core`` and ``deploy`` (the backend table). Not search, distill, ship, report, run or cli.
"""
