"""Checkpoints: one path from a config to a model, one weights-only reader, one shape check."""

import pytest
import torch

from satlib.checkpoint import CheckpointError, build_model, load_checkpoint, model_from_checkpoint
from satlib.config import load_config
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
    rebuilt, stored, _ = model_from_checkpoint(tmp_path / "run.pt")
    assert stored == config
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt(x).loc_map, model(x).loc_map) and torch.equal(rebuilt(x).logits, model(x).logits)


def test_a_checkpoint_that_does_not_fit_names_file_key_and_shapes(tmp_path):
    five = build_model(tiny_config(num_classes=5))
    torch.save({"model": five.state_dict(), "config": tiny_config(num_classes=3).to_dict()}, tmp_path / "odd.pt")
    expected = (r"odd.pt: 'head.weight' has shape \(5, 32, 3, 3\) in the checkpoint but \(3, 32, 3, 3\) in the model "
                r"\(num_classes differs\)")
    with pytest.raises(CheckpointError, match=expected):
        model_from_checkpoint(tmp_path / "odd.pt")


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
