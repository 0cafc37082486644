"""Inputs: what a run starts from.

Owns: profiles (DeviceProfile: load and validate device TOML files), data (data sets, transfer
sets, the teacher-output cache) and teachers (load a teacher in any supported format, the
built-in CNN teacher, fingerprints, accuracy).

May import: ``edgekd.core`` and ``deploy`` (the backend table). Not search, distill, ship, report, run or cli.
"""
