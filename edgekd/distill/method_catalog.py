"""The built-in training methods and the options each declares, registered in
:mod:`edgekd.distill.methods` when the package ``edgekd.distill`` is imported. Every default cites where it comes from; docs/methods.md has
the full table and the formulas.

- ``T`` of kd/fitnet/ban: 4, Hinton et al. 2015 used T in 2..20; 4 is the common CIFAR value
  (mdistiller's KD and DKD configs).
- ``alpha`` (weight of the hard labels) 0.1: mdistiller's CIFAR KD (CE 0.1, KD 0.9).
- ``fitnet.lambda_start``/``fitnet.lambda_end`` 4 -> 1: Romero et al. 2015 anneal the weight of
  the soft term linearly from 4 to 1 over stage 2.
- DKD (Zhao et al., CVPR 2022, its CIFAR-100 setting and mdistiller's ``DKD`` config): ``dkd.ce``
  1, ``dkd.alpha`` 1, ``dkd.beta`` 8, ``T`` 4, and a linear warm-up of the distillation term over
  20 of its 240 epochs, here the same share of the stage: ``dkd.warmup`` 1/12.
- LS-KD (Sun et al., CVPR 2024, the authors' ``tools/train.py --logit-stand --base-temp 2
  --kd-weight 9`` with the CE weight 0.1 of their CIFAR KD config): ``lskd.ce`` 0.1, ``lskd.kd``
  9, base temperature ``T`` 2.
- AT (Zagoruyko & Komodakis, ICLR 2017, and their code): ``at.beta`` 1000, ``at.p`` 2.
- ``label_smoothing`` 0 (off) for every method with a hard-label term (Szegedy et al. 2016).

What each built-in method trains (formulas in :mod:`edgekd.distill.losses`; the trainer,
:mod:`edgekd.distill.trainer`, runs every one of them):

- ``scratch``: cross-entropy on the labels (plain back-prop).
- ``kd`` (Hinton et al. 2015): ``a*CE + (1-a)*T^2*KL(p_t^T || p_s^T)``.
- ``fitnet`` (Romero et al. 2015), two stages. Stage 1 (``"hint"``,
  :mod:`edgekd.distill.hint_stage`): the student up to its guided layer plus a regressor
  (:mod:`edgekd.distill.pairing`: equal resolutions) are trained on ``1/2 ||u_h - r(v_g)||^2``
  summed over channels, averaged over positions (``reduction="channel"``), with their own Adam
  (``hint_lr``) and cosine, for at most ``hint_epochs`` epochs **in addition to** the
  ``epochs`` of stage 2, stopping early when the regressor's R^2 plateaus (``hint_patience``,
  ``hint_min_delta``); R^2 is logged per hint epoch (metrics.jsonl) and in result.json
  (``hint_r2``, ``hint_epochs_done``). The teacher runs up to its hint layer on every batch of
  stage 1 (hint maps are too large to cache). Stage 2 (``"kd"``) trains the whole student
  for ``epochs`` epochs with KD whose soft term is weighted by ``lambda``, annealed
  *linearly per step* from ``fitnet.lambda_start`` (4) to ``fitnet.lambda_end`` (1) over stage 2, with the
  weights renormalised so the loss scale (hence the effective learning rate) stays that of ``kd``::

      L = (a*CE + (1-a)*lambda(t)*T^2*KL) / (a + (1-a)*lambda(t))

  This is the paper's schedule (FitNets weight their soft cross-entropy by a lambda that
  starts at 4 and decays linearly to 1, so soft targets dominate early and the labels
  matter more and more). The renormalisation is ours: without it the soft gradient is 4x
  larger at the start of stage 2, a 4x jump of the effective learning rate right after
  the hint stage. At lambda = 1 the loss is exactly ``kd``'s, so
  ``fitnet`` vs ``kd`` isolates the hints and the annealing. The regressor is thrown away
  after stage 1, except with ``hint_mode="joint"``: then it trains until the end and the KD
  stage's loss gains ``hint_beta * L_hint``; ``hint_mode="multi"`` pairs one hint per teacher
  stage (:mod:`edgekd.distill.hint_stage`, :mod:`edgekd.distill.hint_training`). ``scratch``, ``kd`` and ``fitnet`` with the same ``epochs`` get the same
  number of KD passes; fitnet's hint epochs are extra (compare at equal wall-clock as well).
- ``dkd`` (Zhao et al. 2022, decoupled KD): ``ce*CE + w*T^2*(alpha*TCKD + beta*NCKD)``, the KD
  term split into its target-class and non-target-class parts and weighted apart, ``w`` warming
  up linearly (:class:`edgekd.distill.objectives.DKDLoss`).
- ``lskd`` (Sun et al. 2024, logit standardisation): ``ce*CE + kd*T^2*KL(softmax(Z(z_t)/T) ||
  softmax(Z(z_s)/T))`` with ``Z`` the z-score of a logit vector, so the student matches the
  teacher's logit shape rather than its scale (:class:`~edgekd.distill.objectives.LSKDLoss`).
- ``fitnet-dkd``, ``fitnet-lskd``: fitnet's hint stage, then dkd or lskd in place of kd.
- ``mimic`` (Ba & Caruana 2014): ``1/2 ||z_s - z_t||^2`` on logits, no labels.
- ``at`` (Zagoruyko & Komodakis 2017) and any method whose loss declares ``taps()``: the trainer
  passes the tapped features (:mod:`edgekd.distill.taps`) and knows nothing else about it.
- ``ban`` (Furlanello et al. 2018, born-again networks): generations of the same student,
  each distilled from the one before (:mod:`edgekd.distill.ban`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.distill.methods import Method, MethodOption, PlotStyle, Stage, lazy_loss, register_method

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig, TrainResult

__all__ = ["KD_OPTIONS", "DKD_OPTIONS", "LSKD_OPTIONS", "AT_OPTIONS", "FITNET_OPTIONS", "LABEL_SMOOTHING"]

_OBJECTIVES = "edgekd.distill.objectives"

LABEL_SMOOTHING = MethodOption("label_smoothing", 0.0, "label smoothing of the hard-label cross-entropy",
                               high=1.0, high_open=True)
_T4 = MethodOption("T", 4.0, "softmax temperature of the soft targets", low_open=True)
KD_OPTIONS = (_T4, MethodOption("alpha", 0.1, "weight of the hard labels: a*CE + (1-a)*T^2*KL", high=1.0),
              LABEL_SMOOTHING)
FITNET_OPTIONS = KD_OPTIONS + (
    MethodOption("fitnet.lambda_start", 4.0, "weight of the soft term at the start of the KD stage",
                 key="lambda_start"),
    MethodOption("fitnet.lambda_end", 1.0, "... annealed linearly to this at its end", key="lambda_end"))
DKD_OPTIONS = (_T4, MethodOption("dkd.ce", 1.0, "weight of the cross-entropy"),
               MethodOption("dkd.alpha", 1.0, "weight of TCKD (target class)"),
               MethodOption("dkd.beta", 8.0, "weight of NCKD (non-target classes)"),
               MethodOption("dkd.warmup", 20 / 240, "share of the stage over which the KD terms ramp up",
                            high=1.0),
               LABEL_SMOOTHING)
LSKD_OPTIONS = (MethodOption("T", 2.0, "base temperature of the z-scored logits", low_open=True),
                MethodOption("lskd.ce", 0.1, "weight of the cross-entropy"),
                MethodOption("lskd.kd", 9.0, "weight of the standardised KD term"),
                LABEL_SMOOTHING)
AT_OPTIONS = (MethodOption("at.beta", 1000.0, "weight of the attention-transfer term (beta/2 * sum)"),
              MethodOption("at.p", 2.0, "attention map = mean over channels of |A|^p", low_open=True),
              LABEL_SMOOTHING)


def _check_fitnet(config: TrainConfig) -> tuple[str, str] | None:
    # joint hints may skip stage 1: the hint loss then only acts as KD's auxiliary term
    low = 0 if getattr(config, "hint_mode", "single") == "joint" else 1
    if not (isinstance(config.hint_epochs, int) and config.hint_epochs >= low):
        return (f"fitnet needs hint_epochs >= {low} (got {config.hint_epochs!r})",
                "give the hint stage's epoch budget (added on top of --epochs), e.g. --hint-epochs 5"
                + ("" if low == 0 else "; 0 only with --hint-mode joint"))
    return None


def _check_mimic(config: TrainConfig) -> tuple[str, str] | None:
    if config.ensemble == "probs":
        return ("mimic regresses onto logits, and averaged probabilities give logits only up to "
                "a shift per image", "use --ensemble logits with --method mimic")
    return None


def _check_ban(config: TrainConfig) -> tuple[str, str] | None:
    if config.generations < 1:
        return f"generations={config.generations}", "give at least 1"
    return None


def _train_ban(*args: object, **kwargs: object) -> TrainResult:
    from edgekd.distill.ban import train_ban  # the driver runs the trainer: torch, on first use

    return train_ban(*args, **kwargs)


def _hint_epochs(config: TrainConfig) -> int:
    return config.hint_epochs


def _hint_stage() -> Stage:
    return Stage("hint", lazy_loss(_OBJECTIVES, "HintLoss"), kind="hint", epochs=_hint_epochs)


register_method(Method(
    "scratch", "labels only (cross-entropy)", uses_teacher=False, options=(LABEL_SMOOTHING,),
    stages=(Stage("scratch", lazy_loss(_OBJECTIVES, "CrossEntropyLoss")),), baseline=True,
    plot=PlotStyle("tab:green", "^", ("#14521a", "#8fd98f"))))
register_method(Method(
    "kd", "Hinton KD (a*CE + (1-a)*T^2*KL)", options=KD_OPTIONS,
    stages=(Stage("kd", lazy_loss(_OBJECTIVES, "KDLoss"), teacher=True),), baseline=True,
    plot=PlotStyle("tab:orange", "s", ("#8a4200", "#ffc27f"))))
#: A short selection rung spent mostly on a hint stage ranks deep students at about chance:
#: the hint methods' selection rungs train plain KD.
_HINT_RUNGS = "kd"
register_method(Method(
    "fitnet", "hint stage then KD (FitNets)", validate=_check_fitnet, options=FITNET_OPTIONS,
    stages=(_hint_stage(), Stage("kd", lazy_loss(_OBJECTIVES, "KDLoss", anneal=True), teacher=True)),
    baseline=True, rung_method=_HINT_RUNGS, plot=PlotStyle("tab:blue", "o", ("#0b3d66", "#74b6e6"))))
register_method(Method(
    "dkd", "decoupled KD (Zhao et al. 2022)", options=DKD_OPTIONS,
    stages=(Stage("dkd", lazy_loss(_OBJECTIVES, "DKDLoss"), teacher=True),)))
register_method(Method(
    "lskd", "KD on z-scored logits (Sun et al. 2024)", options=LSKD_OPTIONS,
    stages=(Stage("lskd", lazy_loss(_OBJECTIVES, "LSKDLoss"), teacher=True),)))
for _second, _options in (("dkd", DKD_OPTIONS), ("lskd", LSKD_OPTIONS)):  # hint stage, then a logit method
    register_method(Method(
        f"fitnet-{_second}", f"hint stage then {_second.upper()}", validate=_check_fitnet, options=_options,
        stages=(_hint_stage(), Stage(_second, lazy_loss(_OBJECTIVES, f"{_second.upper()}Loss"), teacher=True)),
        rung_method=_HINT_RUNGS))
register_method(Method(
    "mimic", "logit L2 (Ba & Caruana)", validate=_check_mimic,
    stages=(Stage("mimic", lazy_loss(_OBJECTIVES, "MimicLoss"), teacher=True),),
    plot=PlotStyle("tab:purple", "D", ("#4b2a6b", "#c7a8e0"))))
register_method(Method(
    "at", "attention transfer (Zagoruyko & Komodakis 2017)",
    options=AT_OPTIONS,
    stages=(Stage("at", lazy_loss("edgekd.distill.feature_objectives", "ATLoss"), teacher=True),)))
register_method(Method(
    "ban", "born-again generations (each trained with kd)", compress=False, validate=_check_ban,
    train=_train_ban, options=KD_OPTIONS, plot=PlotStyle("tab:brown", "v", ("#4a2a22", "#c9a093"))))
