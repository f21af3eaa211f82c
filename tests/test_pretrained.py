"""The committed stand-in backbone: its file against its provenance, how it loads, and its command in short."""

import json

import pytest
import torch
from safetensors.torch import load_file

from satlib.build import build_model
from satlib.config import config_from_dict, load_config
from satlib.models import create_model, load_pretrained
from satlib.pretrained import PROVENANCE, RECIPE, STANDIN, file_sha256, resolve_weights, tensors_sha256

WIDTHS = {"stem_widths": [16, 32, 64], "embed_dim": 64}  # configs/pretrain_fills.yaml's (the demo's)


@pytest.fixture(scope="module")
def provenance() -> dict:
    return json.loads(PROVENANCE.read_text())


def test_the_file_is_the_one_its_json_describes(provenance):
    state = load_file(str(STANDIN))
    assert file_sha256(STANDIN) == provenance["sha256"]
    assert tensors_sha256(state) == provenance["tensors_sha256"]
    assert {key: list(value.shape) for key, value in state.items()} == provenance["shapes"]
    assert not any(key.startswith("head.") for key in state)  # the pretraining classifier is not shipped
    assert STANDIN.stat().st_size < 2_000_000


def test_the_json_records_todays_recipe(provenance):
    """Editing configs/pretrain_fills.yaml without pretraining again makes the file's provenance stale. The
    JSON's recipe is read as a checkpoint's config is (fields added since take their defaults, moved keys
    their new place), so a new config field with a default does not make it stale."""
    today = load_config(RECIPE).to_dict()
    recorded = config_from_dict(provenance["config"], source=str(PROVENANCE)).to_dict()
    for recipe in (today, recorded):
        recipe["train"] = {key: value for key, value in recipe["train"].items() if key not in ("out", "device")}
    assert recorded == today
    assert provenance["torch_threads"] == 1 and provenance["seed"] == today["train"]["seed"]


@pytest.mark.parametrize("method, new", [("sat", ["loc_token", "loc_embed", "head.weight", "head.bias"]),
                                         ("cam", ["head.weight", "head.bias"]),
                                         ("tscam", ["head.weight", "head.bias"])])
def test_it_loads_into_every_method_of_that_backbone_with_only_the_new_parts_new(method, new):
    model = create_model(f"{method}_tiny_convstem", num_classes=6, **WIDTHS)
    report = load_pretrained(model, STANDIN)
    assert sorted(report.missing) == sorted(new) and report.unexpected == []
    loaded, state = model.state_dict(), load_file(str(STANDIN))
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_a_recipe_names_it_by_file_name(tmp_path):
    assert resolve_weights(STANDIN.name) == str(STANDIN)
    assert resolve_weights("timm") == "timm" and resolve_weights("") == ""
    elsewhere = tmp_path / STANDIN.name
    elsewhere.write_bytes(b"")
    assert resolve_weights(str(elsewhere)) == str(elsewhere)  # an existing path wins
    config = load_config("synthetic_cpu", [f"model.pretrained={STANDIN.name}"])
    model, shipped = build_model(config), load_file(str(STANDIN))
    assert torch.equal(model.state_dict()["pos_embed"], shipped["pos_embed"])  # the shipped weights loaded


@pytest.mark.slow
def test_the_command_in_short_is_deterministic_and_writes_the_same_tensors(tmp_path, provenance):
    """`python -m satlib.pretrained` on a tiny set for one short epoch, twice: the same checksum, and the
    committed file's tensor names and shapes."""
    from satlib.pretrained.__main__ import pretrain

    short = [f"data.root={tmp_path / 'data'}", "data.synth.per_class=3", "train.epochs=1"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = pretrain(tmp_path / "a.safetensors", run_dir=tmp_path / "a", overrides=short)
        second = pretrain(tmp_path / "b.safetensors", run_dir=tmp_path / "b", overrides=short)
    finally:
        torch.set_num_threads(threads)
    written = load_file(str(tmp_path / "b.safetensors"))
    assert first["tensors_sha256"] == second["tensors_sha256"] == tensors_sha256(written)
    assert first["shapes"] == provenance["shapes"]
    assert first["pretraining"]["step"] == 4  # 2 training images a class x 64 classes, batch 32
    assert first["command"] == "python -m satlib.pretrained " + " ".join(short)
