"""Distillation engine: losses (KD, hints, logit mimic), FitNets hint taps and regressors,
and the one trainer for scratch / kd / fitnet / mimic / ban (imports torch)."""

from edgekd.distill.trainer import METHODS, TrainConfig, TrainResult, train_student

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train_student"]
