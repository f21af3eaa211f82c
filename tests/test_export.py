"""Sharing a trained model (satlib.export): export -> satlib.load and timm give the same model; the card
is the run's."""

import json
import re

import pytest
import timm
import torch

import satlib
from satlib.build import build_datasets
from satlib.cli import main
from satlib.config import Config
from satlib.data import collate


def _test_images(loaded, data_root) -> torch.Tensor:
    config = loaded.info.config
    config.data.root = str(data_root)
    _, test_set = build_datasets(config, train=False)
    return collate([test_set[i] for i in range(len(test_set))])["images"]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "sat-tiny"
    assert main(["export", str(trained_run.checkpoint), "--out", str(out)]) == 0
    return out


def test_export_loads_back_as_the_same_model(trained_run, tiny_data, exported):
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    original, back = satlib.load(trained_run.checkpoint), satlib.load(exported)
    assert back.info == original.info  # name, classes, input, threshold, protocol, normalisation
    assert back.info.metrics == original.info.metrics and back.info.config == original.info.config
    images = _test_images(original, tiny_data)
    with torch.no_grad():
        a, b = original.model(images), back.model(images)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.loc_map, b.loc_map)


def test_timm_loads_an_export_of_a_registered_name(trained_run, tiny_data, exported):
    """After `import satlib`, timm builds the export from its folder, or from the name and the weights file."""
    hub = json.loads((exported / "config.json").read_text())
    assert hub["architecture"] == "sat_tiny_convstem" and hub["num_classes"] == 3
    assert hub["pretrained_cfg"]["input_size"] == [3, 32, 32] and hub["satlib"]["protocol"] == "sat"
    original = satlib.load(trained_run.checkpoint)
    images = _test_images(original, tiny_data)
    from_folder = timm.create_model(f"local-dir:{exported}", pretrained=True).eval()
    by_name = timm.create_model(hub["architecture"], pretrained=True, **hub["model_args"],
                                pretrained_cfg_overlay=dict(file=str(exported / "model.safetensors"))).eval()
    with torch.no_grad():
        expected = original.model(images)
        for model in (from_folder, by_name):
            out = model(images)
            assert torch.equal(out.logits, expected.logits) and torch.equal(out.loc_map, expected.loc_map)


def test_the_model_card_holds_the_runs_numbers(trained_run, exported):
    run = json.loads((trained_run.out / "metrics.json").read_text())  # the last epoch: checkpoint.pt's record
    card = (exported / "README.md").read_text()
    rows = dict(re.findall(r"^\| ([^|]+) \| ([\d.]+) \|$", card, flags=re.M))
    assert rows["GT-known Loc"] == f"{run['gt_known']:.2f}" and rows["Top-1 Loc"] == f"{run['top1_loc']:.2f}"
    assert rows["MaxBoxAccV2"] == f"{run['maxboxacc_v2']:.2f}" and rows["Top-1 Cls"] == f"{run['top1_cls']:.2f}"
    assert f"map threshold {run['best_threshold']:g}" in card and f"epoch {run['epoch']}" in card
    assert "chosen on the test split" in card and "seed 0" in card and f"satlib {satlib.__version__}" in card


def test_a_baseline_export_loads_through_satlib_not_timm(tmp_path):
    """cam_/tscam_ names are satlib's, not timm's: satlib.load and satlib.create_model read the folder."""
    config = Config()
    config.model.name, config.model.num_classes, config.data.img_size = "cam_tiny_convstem", 4, 32
    config.model.kwargs = {"stem_widths": [8, 16, 16], "embed_dim": 32, "depth": 3, "num_heads": 2}
    torch.manual_seed(0)
    model = satlib.create_model(config.model.name, num_classes=4, img_size=32, **config.model.kwargs)
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "class_names": list("abcd")},
               tmp_path / "cam.pt")
    out = satlib.export_model(satlib.load(tmp_path / "cam.pt"), tmp_path / "cam")
    hub = json.loads((out / "config.json").read_text())
    assert hub["label_names"] == list("abcd") and "local-dir" not in (out / "README.md").read_text()
    with pytest.raises(RuntimeError, match="Unknown model"):
        timm.create_model(f"local-dir:{out}", pretrained=True)
    images = torch.randn(2, 3, 32, 32)
    rebuilt = satlib.create_model(hub["architecture"], pretrained=out / "model.safetensors", **hub["model_args"])
    with torch.no_grad():
        expected = model.eval()(images)
        for other in (satlib.load(out).model, rebuilt.eval()):
            assert torch.equal(other(images).logits, expected.logits)


def test_a_folder_that_is_no_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json; not a folder `satlib export` wrote"):
        satlib.load(tmp_path)
