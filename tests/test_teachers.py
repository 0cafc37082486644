"""edgekd.inputs.teachers: every teacher format round-trips, unsafe inputs are refused, mismatches
are explained, the built-in teacher is trained once and then read from the cache."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import click
import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

from edgekd.inputs import teachers as teachers_module
from edgekd.cli.cli_options import data_option, pair_arches, resolve_teachers, teacher_options
from edgekd.inputs.data import ImageDataset, make_dataset, to_tensor
from edgekd.inputs.loaders import load_dataset
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import sha256_file
from edgekd.distill import builtin_teacher as builtin_module
from edgekd.distill.builtin_teacher import builtin_teacher, load_teacher
from edgekd.inputs.teachers import BUILTIN_ARCH, BuiltinCNN, check_teacher, model_fingerprint


@pytest.fixture(scope="module")
def mnist() -> ImageDataset:
    return load_dataset()


@pytest.fixture(scope="module")
def rgb(mnist: ImageDataset) -> ImageDataset:
    """Real MNIST digits as 3x32x32 colour images (padded, channels tinted differently)."""
    def colour(x: np.ndarray) -> np.ndarray:
        x = np.pad(x[:, 0], ((0, 0), (2, 2), (2, 2)))
        return np.stack([x, x // 2, 255 - x], axis=1)
    return make_dataset(name="rgb-mnist", source="test", classes=mnist.classes,
                        x_train=colour(mnist.x_train[:256]), y_train=mnist.y_train[:256],
                        x_test=colour(mnist.x_test[:64]), y_test=mnist.y_test[:64])


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model("resnet18", num_classes=10, weights=None).eval()


@pytest.fixture(scope="module")
def batch(rgb: ImageDataset) -> torch.Tensor:
    return to_tensor(rgb.x_test[:5], rgb.normalization)


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "dataparallel"])
def test_state_dict_with_torchvision_arch(tmp_path: Path, resnet: nn.Module, rgb: ImageDataset,
                                          batch: torch.Tensor, wrap: str) -> None:
    state = resnet.state_dict()
    payload = {"plain": state, "state_dict": {"state_dict": state, "epoch": 3},
               "model": {"model": state}, "dataparallel": {f"module.{k}": v for k, v in state.items()}}
    torch.save(payload[wrap], tmp_path / "w.pth")
    loaded = load_teacher(str(tmp_path / "w.pth"), arch="resnet18", dataset=rgb)
    assert not loaded.training
    _same_outputs(resnet, loaded, batch)
    assert model_fingerprint(loaded) == model_fingerprint(resnet)


def test_torchscript_round_trip(tmp_path: Path, resnet: nn.Module, rgb: ImageDataset,
                                batch: torch.Tensor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated upstream
        torch.jit.script(resnet).save(str(tmp_path / "t.pt"))
    loaded = load_teacher(str(tmp_path / "t.pt"), dataset=rgb)
    _same_outputs(resnet, loaded, batch)
    assert model_fingerprint(loaded) == sha256_file(tmp_path / "t.pt")
    with pytest.raises(EdgekdError, match="takes 3 channels but the data has 1; the data is grayscale"):
        check_teacher(loaded, (1, 28, 28), 10)  # the layers are hidden, the message is not


def test_torch_export_round_trip_with_a_static_batch(tmp_path: Path, resnet: nn.Module,
                                                     rgb: ImageDataset, batch: torch.Tensor) -> None:
    program = torch.export.export(resnet, (torch.zeros(2, 3, 32, 32),))  # exported at batch 2
    torch.export.save(program, tmp_path / "t.pt2")
    loaded = load_teacher(str(tmp_path / "t.pt2"), dataset=rgb, trust_code=True)
    loaded.eval().train(False)  # the mode calls other stages make must not fail
    _same_outputs(resnet, loaded, batch)  # batch 5: run as 2 + 2 + (1 padded)
    assert model_fingerprint(loaded) == sha256_file(tmp_path / "t.pt2")


def test_whole_pickled_module_needs_trust_code(tmp_path: Path, resnet: nn.Module,
                                               batch: torch.Tensor) -> None:
    torch.save(resnet, tmp_path / "full.pth")
    with pytest.raises(EdgekdError, match="pickled Python object.*--trust-code"):
        load_teacher(str(tmp_path / "full.pth"))
    _same_outputs(resnet, load_teacher(str(tmp_path / "full.pth"), trust_code=True), batch)


class _Exploit:
    """Unpickling this creates a marker file: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _Exploit(marker)}, tmp_path / "evil.pth")
    with pytest.raises(EdgekdError, match="does not unpickle"):
        load_teacher(str(tmp_path / "evil.pth"), arch="resnet18")
    assert not marker.exists()
    # the payload is real: trusting the file runs it (and the result is still no model)
    with pytest.raises(EdgekdError):
        load_teacher(str(tmp_path / "evil.pth"), arch="resnet18", trust_code=True)
    assert marker.exists()


def test_entry_point_needs_trust_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      mnist: ImageDataset) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "my_teacher_pkg.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("module code ran")
        from edgekd.inputs.teachers import BuiltinCNN

        def make():
            return BuiltinCNN((1, 28, 28), 10)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_teacher_pkg", raising=False)
    with pytest.raises(EdgekdError, match="pass --trust-code"):
        load_teacher("my_teacher_pkg:make", dataset=mnist)
    assert not marker.exists() and "my_teacher_pkg" not in sys.modules
    model = load_teacher("my_teacher_pkg:make", trust_code=True, dataset=mnist)
    assert isinstance(model, BuiltinCNN) and marker.exists()
    # an entry point as the architecture of a state_dict file
    torch.manual_seed(1)
    trained = BuiltinCNN().eval()
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    with pytest.raises(EdgekdError, match="pass --trust-code"):
        load_teacher(str(tmp_path / "w.pt"), arch="my_teacher_pkg:make")
    loaded = load_teacher(str(tmp_path / "w.pt"), arch="my_teacher_pkg:make", trust_code=True)
    _same_outputs(trained, loaded, to_tensor(mnist.x_test[:4], mnist.normalization))
    with pytest.raises(EdgekdError, match="cannot be imported"):
        load_teacher("my_teacher_pkg:missing", trust_code=True)


# --------------------------------------------------------------------------- mismatches
def test_state_dict_mismatches_say_what_differs(tmp_path: Path, resnet: nn.Module,
                                                rgb: ImageDataset) -> None:
    torch.save(resnet.state_dict(), tmp_path / "w.pth")
    with pytest.raises(EdgekdError, match=r"fc\.weight is 10x512 in the file but 5x512 in resnet18"):
        load_teacher(str(tmp_path / "w.pth"), arch="resnet18", num_classes=5)
    with pytest.raises(EdgekdError, match="unexpected key"):
        load_teacher(str(tmp_path / "w.pth"), arch=BUILTIN_ARCH, dataset=rgb)
    with pytest.raises(EdgekdError, match="did you mean resnet18"):
        load_teacher(str(tmp_path / "w.pth"), arch="resnet-18")
    with pytest.raises(EdgekdError, match="pass --arch"):
        load_teacher(str(tmp_path / "w.pth"))
    with pytest.raises(EdgekdError, match="no such file"):
        load_teacher(str(tmp_path / "nope.pth"))
    with pytest.raises(EdgekdError, match="without --teacher"):
        load_teacher(None, arch="resnet18")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(EdgekdError, match="not a readable PyTorch file"):
        load_teacher(str(tmp_path / "junk.pt"))
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(EdgekdError, match="not a state_dict of tensors"):
        load_teacher(str(tmp_path / "meta.pt"), arch="resnet18")


def test_check_teacher_messages(resnet: nn.Module) -> None:
    with pytest.raises(EdgekdError, match="does not accept input 1x28x28.*grayscale.*RGB"):
        check_teacher(resnet, (1, 28, 28), 10)
    with pytest.raises(EdgekdError, match="outputs 10 classes but the data has 5"):
        check_teacher(resnet, (3, 32, 32), 5)
    with pytest.raises(EdgekdError, match="does not accept input 1x32x32: .*mat1 and mat2"):
        check_teacher(BuiltinCNN((1, 28, 28), 10).eval(), (1, 32, 32), 10)
    check_teacher(resnet, (3, 32, 32), 10)  # the matching case passes


def test_model_fingerprint_tracks_weights() -> None:
    torch.manual_seed(0)
    a = BuiltinCNN()
    b = BuiltinCNN()
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.head[-1].bias[3] += 1e-3
    assert model_fingerprint(a) != model_fingerprint(b)
    b.load_state_dict(a.state_dict())
    b.features[0][1].running_mean[0] += 1.0  # buffers count too
    assert model_fingerprint(a) != model_fingerprint(b)


# --------------------------------------------------------------------------- built-in teacher
def test_builtin_cnn_size() -> None:
    model = BuiltinCNN((1, 28, 28), 10)
    params = sum(p.numel() for p in model.parameters())
    assert 300_000 <= params <= 400_000
    from edgekd.distill.hints import list_layers
    from edgekd.distill.pairing import auto_layer

    assert auto_layer(list_layers(model.eval(), (1, 28, 28))) == "features.1.2"


def test_builtin_teacher_is_trained_once_then_cached(tmp_path: Path, mnist: ImageDataset,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    small = make_dataset(name="small", source="test", classes=mnist.classes,
                         x_train=mnist.x_train[:512], y_train=mnist.y_train[:512],
                         x_test=mnist.x_test[:200], y_test=mnist.y_test[:200])
    first = builtin_teacher(small, cache_dir=tmp_path, epochs=1, progress=False)
    files = list((tmp_path / "teachers").glob("builtin-cnn-*.pt"))
    assert len(files) == 1 and not first.training
    payload = torch.load(files[0], weights_only=True)
    assert payload["data_fingerprint"] == small.fingerprint() and payload["recipe"]["epochs"] == 1
    assert 0.0 <= payload["metrics"]["test_acc"] <= 1.0

    def no_training(*_args, **_kwargs):
        raise AssertionError("the cached teacher must be reused, not retrained")

    monkeypatch.setattr(builtin_module, "train_builtin_teacher", no_training)
    again = builtin_teacher(small, cache_dir=tmp_path, epochs=1, progress=False)
    assert model_fingerprint(again) == model_fingerprint(first)
    from_file = load_teacher(str(files[0]), dataset=small)  # the cache file is a teacher file
    assert model_fingerprint(from_file) == model_fingerprint(first)
    with pytest.raises(AssertionError, match="reused"):  # another recipe is another cache entry
        builtin_teacher(small, cache_dir=tmp_path, epochs=2, progress=False)


def test_builtin_teacher_training_is_seeded(mnist: ImageDataset) -> None:
    small = make_dataset(name="s", source="test", classes=mnist.classes,
                         x_train=mnist.x_train[:256], y_train=mnist.y_train[:256],
                         x_test=mnist.x_test[:50], y_test=mnist.y_test[:50])
    recipe = builtin_module.TeacherRecipe(epochs=1, batch_size=64)
    a, _ = builtin_module.train_builtin_teacher(small, recipe, progress=False)
    b, _ = builtin_module.train_builtin_teacher(small, recipe, progress=False)
    assert model_fingerprint(a) == model_fingerprint(b)


def test_builtin_teacher_trains_through_the_one_trainer(mnist: ImageDataset, tmp_path: Path) -> None:
    """No second loop (issue 10.7): the teacher is exactly what train_student makes of a seeded
    BuiltinCNN with the recipe's TrainConfig, and its accuracy is the trainer's."""
    from edgekd.distill.trainer import train_student

    small = make_dataset(name="s", source="test", classes=mnist.classes,
                         x_train=mnist.x_train[:256], y_train=mnist.y_train[:256],
                         x_test=mnist.x_test[:50], y_test=mnist.y_test[:50])
    recipe = builtin_module.TeacherRecipe(epochs=2, batch_size=64)
    teacher, metrics = builtin_module.train_builtin_teacher(small, recipe, progress=False)
    torch.manual_seed(recipe.seed)
    config = builtin_module.teacher_train_config(recipe)
    assert (config.method, config.optimizer, config.lr, config.val_fraction) == ("scratch", "adamw",
                                                                                  recipe.lr, 0.0)
    direct = train_student(BuiltinCNN(small.input_shape, small.num_classes), [], small, config,
                           tmp_path / "direct", progress=False)
    assert model_fingerprint(direct.model.cpu()) == model_fingerprint(teacher)
    assert metrics["test_acc"] == direct.test_acc == pytest.approx(
        builtin_module.model_accuracy(teacher, small.x_test, small.y_test, small.normalization))
    assert metrics["train_samples"] == 256 and metrics["epochs"] == 2


def test_inputs_stage_loads_the_builtin_teacher_it_is_given(mnist: ImageDataset) -> None:
    """inputs never trains: its load_teacher takes the built-in teacher from the caller."""
    given = BuiltinCNN(mnist.input_shape, mnist.num_classes)
    assert teachers_module.load_teacher(None, dataset=mnist, builtin=lambda _data: given) is given
    with pytest.raises(ValueError, match="distill"):
        teachers_module.load_teacher("builtin", dataset=mnist)


def test_builtin_teacher_training_reports_each_epoch_in_a_log(mnist: ImageDataset, capsys) -> None:
    """Not a terminal (a pipe, a CI log): plain lines, not minutes of silence (issue 15.3)."""
    small = make_dataset(name="s", source="test", classes=mnist.classes,
                         x_train=mnist.x_train[:256], y_train=mnist.y_train[:256],
                         x_test=mnist.x_test[:50], y_test=mnist.y_test[:50])
    builtin_module.train_builtin_teacher(small, builtin_module.TeacherRecipe(epochs=2),
                                         progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("training the built-in teacher: 2 epochs on 256 images")
    # the trainer's own epoch lines (edgekd.core.fmt.epoch_line): the teacher has no loop of its own
    assert [line.split(":")[0] for line in lines[1:]] == [
        "epoch 1/2 (scratch)", "epoch 2/2 (scratch)"]


@pytest.mark.slow
def test_builtin_teacher_full_recipe_accuracy(tmp_path: Path, mnist: ImageDataset) -> None:
    model = builtin_teacher(mnist, cache_dir=tmp_path, progress=False)
    acc = builtin_module.model_accuracy(model, mnist.x_test, mnist.y_test, mnist.normalization)
    assert acc >= 0.98


# --------------------------------------------------------------------------- shared CLI options
def test_cli_options_parse_and_pair() -> None:
    seen = {}

    @click.command()
    @teacher_options
    @data_option
    def command(**kwargs):
        seen.update(kwargs)

    result = CliRunner().invoke(command, ["--teacher", "a.pt", "--teacher", "b.pt", "--arch",
                                          "resnet18", "--trust-code", "--data", "d.npz",
                                          "--image-size", "32x48"])
    assert result.exit_code == 0, result.output
    assert seen == {"teacher": ("a.pt", "b.pt"), "arch": ("resnet18",), "trust_code": True,
                    "data": "d.npz", "image_size": (32, 48)}
    assert CliRunner().invoke(command, ["--image-size", "big"]).exit_code == 2
    assert pair_arches(("a", "b"), ("x",)) == [("a", "x"), ("b", "x")]
    assert pair_arches(("a", "b"), ("x", "y")) == [("a", "x"), ("b", "y")]
    assert pair_arches((), ()) == [(None, None)]
    with pytest.raises(EdgekdError, match="once per teacher"):
        pair_arches(("a", "b", "c"), ("x", "y"))


def test_resolve_teachers_checks_against_the_data(tmp_path: Path, resnet: nn.Module,
                                                  mnist: ImageDataset) -> None:
    torch.save(resnet.state_dict(), tmp_path / "w.pth")
    with pytest.raises(EdgekdError, match="grayscale"):
        resolve_teachers((str(tmp_path / "w.pth"),), ("resnet18",), False, mnist)


def test_builtin_teacher_cache_lives_under_edgekd_cache_dir(tmp_path: Path, mnist: ImageDataset,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "c"))
    path = builtin_module.builtin_teacher_path(mnist, builtin_module.TeacherRecipe())
    assert path.parent == tmp_path / "c" / "teachers" and path.name.startswith("builtin-cnn-")
    monkeypatch.delenv("EDGEKD_CACHE_DIR")
    assert tmp_path not in builtin_module.builtin_teacher_path(
        mnist, builtin_module.TeacherRecipe()).parents


def test_builtin_teacher_cache_key_covers_the_trainers_config(mnist: ImageDataset,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed trainer default (here label smoothing) trains another teacher instead of
    reusing one the old configuration made."""
    import dataclasses

    recipe = builtin_module.TeacherRecipe()
    before = builtin_module.builtin_teacher_path(mnist, recipe)
    real = builtin_module.teacher_train_config
    monkeypatch.setattr(builtin_module, "teacher_train_config",
                        lambda r, **kw: dataclasses.replace(real(r, **kw), label_smoothing=0.1))
    assert builtin_module.builtin_teacher_path(mnist, recipe) != before


def test_student_checkpoint_is_a_teacher(tmp_path: Path, mnist: ImageDataset) -> None:
    """Born-again generations: a trained student's checkpoint describes itself, no --arch."""
    from edgekd.core.checkpoint import save_student
    from edgekd.search.space import Stage, StudentSpec, build

    spec = StudentSpec(family="plain", input=(1, 28, 28), classes=10,
                       stages=(Stage(8, 1, 2), Stage(16, 1, 2)))
    torch.manual_seed(0)
    student = build(spec).eval()
    save_student(tmp_path / "checkpoint.pt", student, spec=spec, classes=mnist.classes,
                 input_shape=mnist.input_shape, normalization=mnist.normalization,
                 method="scratch", metrics={})
    loaded = load_teacher(str(tmp_path / "checkpoint.pt"), dataset=mnist)
    _same_outputs(student, loaded, to_tensor(mnist.x_test[:4], mnist.normalization))
    assert model_fingerprint(loaded) == model_fingerprint(student)


def test_torch_export_with_a_dynamic_batch(tmp_path: Path, mnist: ImageDataset) -> None:
    torch.manual_seed(0)
    model = BuiltinCNN().eval()
    batch_dim = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.zeros(2, 1, 28, 28),),
                                  dynamic_shapes={"x": {0: batch_dim}})
    torch.export.save(program, tmp_path / "dyn.pt2")
    loaded = load_teacher(str(tmp_path / "dyn.pt2"), dataset=mnist, trust_code=True)
    assert loaded.static_batch is None
    _same_outputs(model, loaded, to_tensor(mnist.x_test[:7], mnist.normalization))
