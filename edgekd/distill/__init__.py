"""Distillation engine: losses (KD, hints, logit mimic), FitNets hint taps and regressors,
and the one trainer for scratch / kd / fitnet / mimic / ban (imports torch); commands holds
the helpers of ``edgekd train`` and ``edgekd layers``.

May import: ``edgekd.core``, ``edgekd.inputs``, ``edgekd.search``. Not ship, report, run or cli.
"""

from edgekd.distill.trainer import METHODS, TrainConfig, TrainResult, train_student

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train_student"]
