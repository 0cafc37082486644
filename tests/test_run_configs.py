"""Issue 10.4: the configurations as documents (run.json keeps them), the refusal of a resume
with a different configuration, and the trial payload as a dataclass that pickles."""

from __future__ import annotations

import json
import pickle

import pytest

from edgekd.core.errors import EdgekdError
from edgekd.distill.config import TRAIN_CONFIG_FORMAT, TrainConfig
from edgekd.run.config import CompressConfig
from edgekd.run.executors import trial_payload
from edgekd.run.halving import TrialJob, TrialPayload
from edgekd.run.rundir import identity, open_run
from edgekd.search.config import SearchConfig
from edgekd.search.space import SpaceConfig


def _json(data: dict) -> dict:
    return json.loads(json.dumps(data))


def test_configs_round_trip_through_json(tmp_path) -> None:
    compress = CompressConfig(epochs=9, candidates=4, method="kd", out=tmp_path / "run", baselines=True)
    assert CompressConfig.from_dict(_json(compress.to_dict())) == compress
    search = SearchConfig(input_shape=(3, 32, 32), shortlist=5, space=SpaceConfig(kernels=(3, 5), max_depth=9))
    assert SearchConfig.from_dict(_json(search.to_dict())) == search
    train = TrainConfig(method="kd", epochs=3, temperature=2.0)
    assert TrainConfig.from_dict(_json({"format": TRAIN_CONFIG_FORMAT, **train.to_dict()})) == train
    assert TrainConfig.from_dict(train.to_dict()) == train  # result.json's untagged copy


@pytest.mark.parametrize("read, document", [
    (CompressConfig.from_dict, {"format": "edgekd.compress-config/1", "epochs": 3, "colour": "red"}),
    (CompressConfig.from_dict, {"format": "someone.else/1", "epochs": 3}),
    (SearchConfig.from_dict, {"format": "edgekd.search-config/9"}),
    (TrainConfig.from_dict, {"format": "edgekd.train-config/2", "epochs": 3}),
])
def test_a_foreign_or_unknown_config_is_one_line(read, document) -> None:
    with pytest.raises(EdgekdError) as error:
        read(document)
    assert "\n" not in str(error.value) and ": " in str(error.value)


def _identity(**config: object) -> dict:
    return identity(teacher={"name": "t", "fingerprint": "a" * 64}, data={"name": "d", "fingerprint": "b" * 64},
                    profile={"name": "host-cpu"}, budget={"macs": 1000}, seed=0,
                    config=CompressConfig(**config).identity_config())


def test_resume_with_another_config_names_each_field_and_the_fix(tmp_path) -> None:
    run, _ = open_run(tmp_path / "r", _identity(epochs=6), resume=False, command=["edgekd", "compress"])
    manifest = run.manifest()
    run.run_json.write_text(json.dumps({**manifest, "options": {"epochs": 6}}))
    run.release()
    with pytest.raises(EdgekdError) as error:
        open_run(tmp_path / "r", _identity(epochs=8, eta=2), resume=True)
    line = str(error.value)
    assert "cannot resume" in line and "config.epochs 6 -> 8" in line and "config.eta 3 -> 2" in line
    assert f"--config {tmp_path / 'r' / 'run.json'}" in line and "--resume" in line and "\n" not in line
    run, resumed = open_run(tmp_path / "r", _identity(epochs=6), resume=True)  # the same config resumes
    assert resumed
    run.release()


def test_the_trial_payload_is_a_dataclass_that_pickles() -> None:
    spec = {"family": "plain", "input": [1, 28, 28], "classes": 10, "stages": [[4, 1, 2]]}
    payload = trial_payload(spec, {"method": "kd", "epochs": 2, "batch_size": 32})
    assert isinstance(payload, TrialPayload) and payload.config == TrainConfig(method="kd", epochs=2, batch_size=32)
    job = TrialJob("abc", 0, 2, payload)
    again = pickle.loads(pickle.dumps(job))  # what the Ray and process executors do with it
    assert again.payload == payload and again.payload.spec == spec
    with pytest.raises(EdgekdError):  # a bad training config fails when the job is made, not in a worker
        trial_payload(spec, {"method": "kd", "epochs": 0})
