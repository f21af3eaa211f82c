"""Checkpoints: one weights-only reader, one strict loader that names the file, key and shapes; and
`satlib.load`, the one path from a checkpoint back to a model and what it was trained with."""

import dataclasses

import pytest
import torch

import satlib
from satlib.build import build_model, normalization
from satlib.checkpoint import CheckpointError, load_checkpoint
from satlib.config import load_config
from satlib.info import LoadedModel, ModelInfo
from satlib.models import read_state_dict

from tiny_recipe import TINY_MODEL


def tiny_config(num_classes: int = 3):
    kwargs = ", ".join(f"{key}: {value}" for key, value in TINY_MODEL.items())
    return load_config("synthetic_cpu", [f"model.kwargs={{{kwargs}}}", "data.img_size=32",
                                         f"model.num_classes={num_classes}", "model.drop_path_rate=0.0"])


def test_a_checkpoint_rebuilds_the_model_build_model_made(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config).eval()
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, tmp_path / "run.pt")
    rebuilt, info = satlib.load(tmp_path / "run.pt")
    assert info.config == config and info.threshold is None and info.class_names == ()
    assert not rebuilt.training
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt(x).loc_map, model(x).loc_map) and torch.equal(rebuilt(x).logits, model(x).logits)


def test_load_round_trip_gives_what_the_run_was_trained_with(trained_run):
    """Every field of the info is the run's: its config, classes, threshold, protocol and normalisation."""
    stored = load_checkpoint(trained_run.checkpoint)
    config = load_config(trained_run.out / "config.yaml")
    loaded = satlib.load(trained_run.checkpoint)
    assert isinstance(loaded, LoadedModel) and isinstance(loaded.info, ModelInfo)
    info = loaded.info
    assert info.config == config and info.name == config.model.name == "sat_tiny_convstem"
    assert info.num_classes == config.model.num_classes == 3 == len(info.class_names)
    assert info.class_names == tuple(stored["class_names"]) and info.img_size == config.data.img_size == 32
    assert info.threshold == trained_run.record["best_threshold"] == stored["best_threshold"]
    assert info.protocol == config.eval.protocol == "sat"
    assert info.normalization == normalization(config) and info.metrics == stored["metrics"]
    assert not any(name in vars(loaded.model) for name in ("best_threshold", "eval_protocol", "input_normalization"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.threshold = 0.5  # a record of what it was trained with, not a setting


def test_a_checkpoint_that_does_not_fit_names_file_key_and_shapes(tmp_path):
    five = build_model(tiny_config(num_classes=5))
    torch.save({"model": five.state_dict(), "config": tiny_config(num_classes=3).to_dict()}, tmp_path / "odd.pt")
    expected = (r"odd.pt: 'head.weight' has shape \(5, 32, 3, 3\) in the checkpoint but \(3, 32, 3, 3\) in the model "
                r"\(num_classes differs\)")
    with pytest.raises(CheckpointError, match=expected):
        satlib.load(tmp_path / "odd.pt")


def test_a_file_that_is_not_a_satlib_checkpoint_says_so(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"foreign.pt: not a satlib checkpoint .*pass --official"):
        satlib.load(tmp_path / "foreign.pt")


class Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_one_reader_refuses_pickled_code_and_names_the_file(tmp_path, capsys):
    torch.save({"model": {"x": Exploit()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil.pth: not a readable checkpoint.*never runs pickled code"):
        load_checkpoint(tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"evil.pth: not a readable checkpoint.*never runs pickled code"):
        read_state_dict(tmp_path / "evil.pth")
    assert "pickled code ran" not in capsys.readouterr().out
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 half a file")
    with pytest.raises(CheckpointError, match="cut.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")
