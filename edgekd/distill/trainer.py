"""One trainer for every registered method (scratch, kd, fitnet, dkd, lskd, fitnet-dkd,
fitnet-lskd, mimic, at; ban runs it once per generation).

What each built-in method trains, with its formula: :mod:`edgekd.distill.method_catalog`
(registered in :mod:`edgekd.distill.methods`, formulas in :mod:`edgekd.distill.losses`). A
method is a sequence of stages; the trainer runs them in order, a ``hint`` stage through its
FitNets part (:mod:`edgekd.distill.hint_training`), and passes tapped features
(:mod:`edgekd.distill.taps`) to any loss that declares ``taps()``. ``ban`` trains whole
students itself (:mod:`edgekd.distill.ban`).

Teacher ensembles, the on-disk cache of the teachers' logits and augmentation with cached
teacher views (``teacher_views = K``): :mod:`edgekd.distill.targets`.

Optimisation: SGD (momentum, Nesterov) or AdamW; the learning rate of each stage warms up
linearly over ``warmup_epochs`` (at most a fifth of the stage), then follows a cosine from
``lr`` down to ``lr_floor * lr`` at the stage's end (:func:`lr_factor`), set per step from
``(step, stage horizon)``; the KD/scratch stage is one schedule over all its epochs.
The losses read their method's options (``config.option``; ``label_smoothing`` smooths every
hard-label term); ``ema`` validates, selects and keeps an EMA of
the weights (:mod:`edgekd.distill.ema`). **When the horizon
grows** (successive halving calls again with a larger ``epochs``), training continues from
the checkpoint and the cosine is recomputed for the new horizon: the rate jumps back up to
the new curve's value at the current step (a warm restart, as in SGDR) and decays to the
floor at the new end. A run that goes straight to ``epochs=E`` therefore differs from one that
stopped at ``E/2`` and was extended; an interrupted-and-resumed run with the same
``epochs`` is identical to an uninterrupted one.

Determinism: the data order (and any augmentation) of epoch ``e`` comes from a generator
seeded with ``(seed, e)``; weights, optimizer, best-so-far and the torch/numpy/python RNG
states are saved atomically in ``checkpoint.pt`` after every epoch. On CPU, resuming
after an interrupted epoch gives exactly the weights of an uninterrupted run.

Selection: the weights with the best validation accuracy (``split_train_val``, ties go to
the later epoch) are the student; test accuracy is measured on them once, at the end.
On CUDA: AMP (float16 autocast + GradScaler) and channels_last.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn as nn

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import append_jsonl
from edgekd.core.runfolder import CHECKPOINT_PT, METRICS_JSONL
from edgekd.core.fmt import epoch_line
from edgekd.core.progress import StepBar, say
from edgekd.distill import augment, losses
from edgekd.distill.checkpointing import Best, Checkpoints, finished_result, load_trained, training_inputs
from edgekd.distill.config import TrainConfig, TrainResult
from edgekd.distill.ema import WeightEMA
from edgekd.distill.evaluate import accuracy, autocast, predict_logits, resolve_device
from edgekd.distill.fast_infer import fast_copy, logit_teachers
from edgekd.distill.hint_training import HintTraining
from edgekd.distill.methods import Batch, Loss, StudentOut, TeacherOut, get_method
from edgekd.distill.schedule import (horizon, lr_factor, make_optimizer, stage_at, stage_bounds, stage_spans,
                                     warmup_steps)
from edgekd.distill.taps import StageTaps, loss_parameters, tapped_stages
from edgekd.distill.targets import (cached_teacher_targets, check_teacher_finite, teacher_fingerprints,
                                    teacher_views)
from edgekd.distill.trainset import TrainData, epoch_generator, prepare_data

if TYPE_CHECKING:
    from edgekd.inputs.data import ImageDataset
    from edgekd.search.space import StudentSpec

__all__ = ["train_student"]


def _check_finite(loss: torch.Tensor, stage: str, epoch: int, batch: int, lr: float) -> None:
    if not bool(torch.isfinite(loss)):
        what = "nan" if bool(torch.isnan(loss)) else "inf"
        raise EdgekdError(f"loss became {what} in stage '{stage}' at epoch {epoch + 1} (batch {batch + 1}): "
                          f"lower --lr (now {lr:g}), or check the data and the teacher's outputs")


_CHECK_EVERY = 25  # steps between finiteness checks on CUDA (each one is a host sync)


def _check_first_bad(first_bad: torch.Tensor, loss: torch.Tensor, stage: str, epoch: int,
                     lr_at: Callable[[int], float]) -> None:
    """Raise the named error for the first non-finite batch tracked on the device, if any."""
    b = int(first_bad)
    if b >= 0:
        _check_finite(torch.tensor(float("nan") if bool(torch.isnan(loss)) else float("inf")),
                      stage, epoch, b, lr_at(b))


# ----------------------------------------------------------------------------- the trainer
class _Trainer:
    """Trains one student (any method but ban) into ``out_dir``; see the module docstring. It
    holds its parts: ``checkpoints`` (the folder's files: save, resume, finish) and ``hints``
    (the FitNets part), each with its own state, and hands them what they work on."""

    def __init__(self, student: StudentSpec | nn.Module, teachers: list[nn.Module], dataset: ImageDataset,
                 config: TrainConfig,
                 out_dir: Path, teacher_fps: list[str] | None, progress: bool,
                 inputs: dict[str, Any] | None = None) -> None:
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.inputs = inputs
        self.dataset, self.teachers = dataset, list(teachers)
        self.method = config.method
        self.stages = stage_spans(config)
        self.losses: dict[str, Loss] = {stage.name: stage.loss(config) for stage, _, _ in self.stages.values()}
        if get_method(self.method).needs_teacher and not self.teachers:
            raise EdgekdError(f"method '{self.method}' needs a teacher: pass --teacher "
                              "(or use --method scratch)")
        self.teacher_fps = teacher_fps
        self.device = resolve_device(config.device)
        self.cuda = self.device.type == "cuda"
        self.spec = student if hasattr(student, "to_dict") and hasattr(student, "stages") else None
        torch.manual_seed(config.seed + config.seed_offset)
        if self.spec is not None:
            from edgekd.search.space import build

            self.model: nn.Module = build(self.spec)
        elif isinstance(student, nn.Module):
            self.model = copy.deepcopy(student)
        else:
            raise EdgekdError(f"student must be a StudentSpec or an nn.Module, got {type(student).__name__}: "
                              "pass a spec JSON or a model")
        self._check_dataset()
        self.checkpoints = Checkpoints(self.out_dir, config, inputs, self.spec, dataset)
        self.model.to(self.device)
        if self.cuda:
            self.model.to(memory_format=torch.channels_last)
        for teacher in self.teachers:
            teacher.eval().to(self.device)
        self.hints = HintTraining(config, self.model, self.device, progress)
        for loss in self.losses.values():  # a loss with parameters of its own (edgekd.distill.taps)
            if isinstance(loss, nn.Module):
                loss.to(self.device)
        self.taps: dict[str, StageTaps] = {}  # stages whose loss declares feature taps
        self.ema: WeightEMA | None = None  # --ema: made at the first step after the hint stage
        self.best = Best()

    def start_from(self, state: dict[str, torch.Tensor]) -> None:
        """Start from ``state`` instead of fresh weights (a checkpoint in the folder still wins)."""
        try:
            self.model.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0][:160]
            raise EdgekdError(f"the starting weights do not fit the student ({first})") from None

    # -- setup -------------------------------------------------------------------------
    def _check_dataset(self) -> None:
        shape, classes = tuple(self.dataset.input_shape), self.dataset.num_classes
        if self.spec is not None:
            if tuple(self.spec.input) != shape or self.spec.classes != classes:
                raise EdgekdError(f"student spec is for input {list(self.spec.input)} and {self.spec.classes} "
                                  f"classes but the data has {list(shape)} and {classes}: use a spec made "
                                  "for this data")

    @property
    def total_epochs(self) -> int:
        return horizon(self.stages)

    def _is_hint(self, stage: str) -> bool:
        return self.stages[stage][0].kind == "hint"

    def _replan(self) -> None:
        """Stage spans once the hint stage has ended (the KD stage starts right after it)."""
        if self.hints.end is not None:
            self.stages = stage_spans(self.config, self.hints.end)

    def _scored(self) -> nn.Module:
        """The weights that are validated, selected and kept: the EMA shadow with --ema."""
        return self.ema.shadow if self.ema is not None else self.model

    def _optimizer(self, stage: str) -> torch.optim.Optimizer:
        params = (list(self.model.parameters()) + self.hints.params(self.stages[stage][0])
                  + loss_parameters(self.losses[stage]))
        return make_optimizer(params, self.config, hint=self._is_hint(stage))

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.config
        started = time.monotonic()
        self.data: TrainData = prepare_data(self.dataset, cfg)
        n_train = len(self.data.y_train)
        if n_train < 2:
            raise EdgekdError(f"only {n_train} training image(s) after the validation split: "
                              "give more data or a smaller --val-fraction")
        self.batch = min(cfg.batch_size, n_train)
        self.steps = n_train // self.batch  # drop the last partial batch
        self.augment = augment.resolve(cfg.augment, tuple(self.dataset.input_shape))
        self.targets: torch.Tensor | None = None
        self.views: tuple[augment.AugParams, torch.Tensor] | None = None
        # logits of augmented batches: a faster copy on CPU (edgekd.distill.fast_infer)
        self.logit_teachers = logit_teachers(self.teachers, self.device, self.data.x_train[:8],
                                             get_method(self.method).needs_teacher and self.augment.active)
        if get_method(self.method).needs_teacher and not self.augment.active:
            fps = self._teacher_fps()
            self.targets = cached_teacher_targets(self.teachers, fps, self.dataset,
                                                   self.data.train_idx, cfg)
        elif get_method(self.method).needs_teacher and cfg.teacher_views > 0:
            self.views = teacher_views(self.logit_teachers, self._teacher_fps(), self.dataset, self.data, self.augment,
                                       cfg, self.device, cfg.teacher_views)
        if get_method(self.method).has_hint_stage:
            self.hints.setup(self.teachers[0], tuple(self.dataset.input_shape), self.losses,
                             [spec for spec, _, _ in self.stages.values()])
        self.taps = tapped_stages(self.losses, self.teachers[0] if self.teachers else None, self.model,
                                  tuple(self.dataset.input_shape))
        self.scaler = torch.amp.GradScaler("cuda") if self.cuda else None

        epoch, seconds, optimizer, opt_stage = self._resume()
        seconds += time.monotonic() - started  # setup time of this call
        while epoch < self.total_epochs:
            t0, cpu0 = time.monotonic(), time.process_time()
            stage = stage_at(self.stages, epoch)
            if optimizer is None or opt_stage != stage:
                optimizer, opt_stage = self._optimizer(stage), stage
            record = self._train_epoch(epoch, stage, optimizer)
            if self._is_hint(stage):
                first, budget = stage_bounds(self.stages, stage, self.config)
                if self.hints.end_stage(epoch + 1 - first, budget, record):
                    self._replan()
            else:
                record["val_acc"] = self._evaluate_val()
                self.best.offer(record["val_acc"], epoch + 1, self._scored())
            epoch += 1
            elapsed = time.monotonic() - t0
            seconds += elapsed
            record["seconds"] = round(elapsed, 4)
            record["cpu_seconds"] = round(time.process_time() - cpu0, 4)  # steadier on a shared machine
            # the curve point first: a kill between the two leaves a line past the checkpoint,
            # which Checkpoints.restore drops (and that epoch trains again); the other order lost it
            append_jsonl(self.out_dir / METRICS_JSONL, record)
            self.checkpoints.save(epoch, seconds, model=self.model, hints=self.hints, losses=self.losses,
                                  optimizer=optimizer, opt_stage=opt_stage, scaler=self.scaler,
                                  best=self.best, ema=self.ema)
            # one plain line per epoch: pipes and CI logs see progress too
            say(self.progress, epoch_line(record, self.total_epochs))
        return self._finish(epoch, seconds)

    def _resume(self) -> tuple[int, float, torch.optim.Optimizer | None, str | None]:
        """``(epoch, seconds, optimizer, its stage)`` to continue from: the folder's checkpoint
        restored into this trainer's parts, or a fresh start. The optimizer comes back only while
        its stage is still the current one."""
        resumed = self.checkpoints.restore(model=self.model, hints=self.hints, losses=self.losses,
                                           scaler=self.scaler)
        self._replan()
        self.best, self.ema = resumed.best, resumed.ema
        optimizer = None
        if (resumed.opt_state is not None and resumed.epoch < self.total_epochs
                and stage_at(self.stages, resumed.epoch) == resumed.opt_stage):
            optimizer = self._optimizer(resumed.opt_stage)
            optimizer.load_state_dict(resumed.opt_state)
        return resumed.epoch, resumed.seconds, optimizer, resumed.opt_stage

    def _batches(self, epoch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(batch index, images, labels, teacher targets or None) of epoch ``epoch``. Images are
        augmented here, once per batch, and the same tensor goes to student and teacher."""
        gen = epoch_generator(self.config.seed + self.config.seed_offset, epoch)
        n = len(self.data.y_train)
        order = torch.randperm(n, generator=gen)
        view = torch.randint(0, self.views[1].shape[0], (n,), generator=gen) if self.views else None
        for b in range(self.steps):
            idx = order[b * self.batch:(b + 1) * self.batch]
            x, t = self.data.x_train[idx], None
            if self.views is not None:
                v = view[idx]
                x = augment.apply(x, self.augment, self.views[0][v * n + idx], self.data.pad_value)
                t = self.views[1][v, idx]
            elif self.augment.active:
                x = augment.apply(x, self.augment, augment.sample(self.augment, len(idx), gen),
                                  self.data.pad_value)
            if self.targets is not None:
                t = self.targets[idx]
            yield b, x, self.data.y_train[idx], t

    def _teacher_forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self._autocast():
            outs = [t(x).float() for t in self.logit_teachers]
        for index, logits in enumerate(outs):
            check_teacher_finite(logits, index)
        return losses.combine_teacher_logits(outs, self.config.ensemble, self.config.ensemble_temperature)

    def _autocast(self) -> Any:
        return autocast(self.device)

    def _teacher_fps(self) -> list[str]:
        return self.inputs["teachers"] if self.inputs else teacher_fingerprints(self.teachers, self.teacher_fps)

    def _loss(self, stage: str, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None,
              progress: float) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
        """The stage's loss object on this batch: ``(loss, logged parts, student logits or None)``."""
        spec = self.stages[stage][0]
        batch = Batch(x, y, progress)
        if spec.kind == "hint":
            loss, parts = self.hints.stage_loss(self.losses[stage], x, batch)
            return loss, parts, None
        hint_r = hint_u = features = teacher_features = None
        if stage in self.taps:  # one student pass: the logits and the loss's features
            logits, features = self.taps[stage].student_pass(x)
            teacher_features = self.taps[stage].teacher_features(x)
        elif self.hints.joint and spec.teacher:  # one student pass: the logits and r(v) (hint_training)
            logits, hint_r, hint_u = self.hints.joint_forward(x)
        else:
            logits = self.model(x).float()
        if spec.teacher and t is None:
            t = self._teacher_forward(x)
        out = self.losses[stage].forward(StudentOut(logits=logits, hint=hint_r, features=features),
                                         TeacherOut(logits=t if spec.teacher else None, hint=hint_u,
                                                    features=teacher_features), batch)
        return out.loss, out.parts, logits

    def _lr_at(self, epoch: int, stage: str) -> tuple[Callable[[int], float], float, int, int]:
        """``(lr of batch b, the stage's base lr, first step of this epoch in its stage, steps of the stage)``: the
        stage's warm-up and cosine (:func:`lr_factor`); the hint stage has its own Adam lr and a
        plain cosine to 0 (edgekd.distill.hint_stage)."""
        cfg = self.config
        first, span = stage_bounds(self.stages, stage, self.config)
        total_steps = span * self.steps
        hint = self._is_hint(stage)
        warmup = 0 if hint else warmup_steps(cfg.warmup_epochs, span, self.steps)
        floor = 0.0 if hint else cfg.lr_floor
        base_lr = cfg.hint_lr if hint else cfg.learning_rate
        step0 = (epoch - first) * self.steps
        return (lambda b: base_lr * lr_factor(step0 + b, total_steps, warmup, floor)), base_lr, step0, total_steps

    def _to_device(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        if t is not None:
            t = t.to(self.device, non_blocking=True)
        return x, y, t

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """One optimiser step on ``loss`` (through the GradScaler under AMP)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def _train_epoch(self, epoch: int, stage: str, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        lr_at, base_lr, step0, total_steps = self._lr_at(epoch, stage)
        self.model.train()
        self.hints.train_mode(self.stages[stage][0])
        sums: dict[str, Any] = {}
        seen, lr = 0, base_lr
        total = self.total_epochs
        # running sums stay tensors on the device: no host sync per step (on CUDA a float() per
        # step would stall the queue); the loss is checked every step on CPU, every
        # _CHECK_EVERY steps on CUDA (the first bad batch is tracked on the device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        bar = StepBar(f"epoch {epoch + 1}/{total} {stage}", self.steps, enabled=self.progress)
        for b, x, y, t in self._batches(epoch):
            lr = lr_at(b)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y, t = self._to_device(x, y, t)
            with self._autocast():
                loss, parts, logits = self._loss(stage, x, y, t, (step0 + b) / max(total_steps, 1))
            if not self.cuda:
                _check_finite(loss, stage, epoch, b, lr)
            else:
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                        torch.full_like(first_bad, b), first_bad)
                if b % _CHECK_EVERY == _CHECK_EVERY - 1 or b == self.steps - 1:
                    _check_first_bad(first_bad, loss, stage, epoch, lr_at)
            self._step(loss, optimizer)
            if self.config.ema > 0 and not self._is_hint(stage):
                self.ema = self.ema or WeightEMA(self.model, self.config.ema)  # from this step's weights
                self.ema.update(self.model)
            loss_sum += loss.detach().float() * len(y)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * len(y)
            if logits is not None:
                correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if self.progress:  # (trials of compress run without: no host sync per step there)
                bar.update(description=f"epoch {epoch + 1}/{total} {stage} loss {float(loss_sum) / seen:.4f}")
        bar.close()
        record: dict[str, Any] = {"epoch": epoch + 1, "stage": stage, "lr_last": lr,
                                  "loss": float(loss_sum) / max(seen, 1), "samples": seen,
                                  "loss_parts": {k: float(v) / max(seen, 1) for k, v in sums.items()}}
        if not self._is_hint(stage):
            record["train_acc"] = int(correct) / max(seen, 1)
        if self.hints.measures_r2(self.stages[stage][0]):
            record.update(self.hints.r2(self.data))
        return record

    def _evaluate_val(self) -> float:
        if len(self.data.y_val) == 0:
            return float("nan")
        model = fast_copy(self._scored(), self.device, self.data.x_val[:8])  # BN folded on CPU: ~2x cheaper
        return accuracy(predict_logits(model, self.data.x_val, device=self.device), self.data.y_val)

    def _finish(self, epoch: int, seconds: float) -> TrainResult:
        """The selected weights' test accuracy, measured once, and the folder's result."""
        if self.best.state is not None:
            self.model.load_state_dict(self.best.state)
        test_acc = accuracy(predict_logits(self.model, self.data.x_test, device=self.device), self.data.y_test)
        val = None if self.best.val is None or math.isnan(self.best.val) else float(self.best.val)
        result = TrainResult(
            method=self.method, val_acc=val, test_acc=test_acc, epochs_done=epoch,
            checkpoint=self.out_dir / CHECKPOINT_PT, seconds=round(seconds, 3),
            best_epoch=self.best.epoch, train_samples=len(self.data.y_train),
            config=self.config.to_dict(), **self.hints.result(), model=self.model, inputs=self.inputs)
        self.checkpoints.finish(result)
        return result


# ----------------------------------------------------------------------------- entry point
def train_student(student: StudentSpec | nn.Module, teachers: list[nn.Module], dataset: ImageDataset,
                  config: TrainConfig,
                  out_dir: Path, *, teacher_fps: list[str] | None = None,
                  progress: bool = True, init_state: dict[str, torch.Tensor] | None = None) -> TrainResult:
    """Train ``student`` (a :class:`~edgekd.search.space.StudentSpec` or any ``nn.Module``) from
    ``teachers`` on ``dataset`` into ``out_dir`` (metrics.jsonl, checkpoint.pt, result.json).

    Calling again on the same ``out_dir`` continues from its checkpoint (a larger
    ``config.epochs`` trains the extra epochs; see the module docstring for the cosine
    schedule); a finished run (``epochs_done >= config.epochs``) returns its stored result
    without training (``result.model`` is then loaded from its checkpoint). A different configuration on the
    same folder is refused. ``init_state`` (a state_dict of a spec student) starts training from
    those weights instead of a fresh initialisation (fine-tuning an inherited sub-network).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    driver = get_method(config.method).train
    if driver is not None:  # a method that trains whole students itself (ban)
        return driver(student, teachers, dataset, config, out_dir, teacher_fps, progress)
    inputs = training_inputs(teachers, dataset, config, teacher_fps)
    done = finished_result(out_dir, config, inputs)
    if done is not None:
        done.model = load_trained(student, done.checkpoint)
        return done
    trainer = _Trainer(student, teachers, dataset, config, out_dir, teacher_fps, progress, inputs)
    if init_state is not None:
        trainer.start_from(init_state)
    return trainer.run()
