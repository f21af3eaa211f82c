"""satlib.notebook: the book's SATLIB_* switches, its recipes and its cache of runs keyed by config."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import satlib.notebook
import satlib.train
from satlib.config import load_config
from satlib.notebook import FINISHED, SHORT_RUN, TINY_SAT, Settings, SettingsError, gpu_kind, read_settings, setup
from satlib.recipes import ModelCost

from tiny_recipe import tiny_overrides

VARIABLES = ("SATLIB_DEVICE", "SATLIB_CUB_ROOT", "SATLIB_IMAGENET_ROOT", "SATLIB_FULL_RUN",
             "SATLIB_OFFICIAL_CHECKPOINT", "SATLIB_SMOKE", "SATLIB_CACHE")


@pytest.fixture
def environ(monkeypatch, tmp_path):
    """A clean SATLIB_* environment with the cache in tmp_path; returns a setter."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SATLIB_CACHE", str(tmp_path / "cache"))

    def set_(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
    return set_


@pytest.fixture
def cub_folder(tmp_path):
    root = tmp_path / "CUB_200_2011"
    (root / "images").mkdir(parents=True)
    (root / "images.txt").write_text("")
    return root


def test_unset_switches_are_todays_cpu_defaults(environ, tmp_path):
    settings = read_settings()
    assert settings.device == torch.device("cpu")
    assert (settings.cub_root, settings.imagenet_root, settings.official_checkpoint) == (None, None, None)
    assert not settings.full_run and not settings.smoke
    assert settings.cache == tmp_path / "cache" / "book"
    assert settings.summary() == "device cpu; data: the synthetic stand-in; runs: short"


def test_every_switch_is_read(environ, tmp_path, cub_folder):
    imagenet = tmp_path / "ILSVRC"
    (imagenet / "train").mkdir(parents=True)
    official = tmp_path / "SAT_CUB.pth.tar"
    official.write_bytes(b"")
    environ(SATLIB_DEVICE="auto", SATLIB_CUB_ROOT=cub_folder, SATLIB_IMAGENET_ROOT=imagenet,
            SATLIB_FULL_RUN=1, SATLIB_OFFICIAL_CHECKPOINT=official, SATLIB_SMOKE=1)
    settings = read_settings()
    assert settings.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (settings.cub_root, settings.imagenet_root, settings.official_checkpoint) == (cub_folder, imagenet, official)
    assert settings.full_run and settings.smoke
    assert "CUB at" in settings.summary() and "SMOKE" in settings.summary() and "full" in settings.summary()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SATLIB_DEVICE", "gpu", "SATLIB_DEVICE='gpu': expected auto, cpu, cuda or cuda:N"),
    ("SATLIB_DEVICE", "mps", "SATLIB_DEVICE='mps': expected auto, cpu, cuda or cuda:N"),
    ("SATLIB_FULL_RUN", "yes please", "SATLIB_FULL_RUN='yes please': expected 1"),
    ("SATLIB_FULL_RUN", "2", "SATLIB_FULL_RUN='2': expected 1"),
    ("SATLIB_SMOKE", "2", "SATLIB_SMOKE='2'"),
    ("SATLIB_CUB_ROOT", "/no/such/folder", "SATLIB_CUB_ROOT='/no/such/folder': no such folder"),
    ("SATLIB_IMAGENET_ROOT", "/no/such/folder", "SATLIB_IMAGENET_ROOT='/no/such/folder': no such folder"),
    ("SATLIB_OFFICIAL_CHECKPOINT", "/no/such.pth.tar", "SATLIB_OFFICIAL_CHECKPOINT='/no/such.pth.tar': no such file"),
])
def test_a_bad_value_names_its_variable(environ, name, value, message):
    environ(**{name: value})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_settings()


def test_a_folder_without_the_layout_is_refused(environ, tmp_path):
    environ(SATLIB_CUB_ROOT=tmp_path, SATLIB_IMAGENET_ROOT=tmp_path)
    with pytest.raises(SettingsError, match=r"SATLIB_CUB_ROOT=.*images\.txt is missing"):
        read_settings()
    environ(SATLIB_CUB_ROOT="")
    with pytest.raises(SettingsError, match=r"SATLIB_IMAGENET_ROOT=.*train is missing"):
        read_settings()


def test_the_official_checkpoint_needs_the_cub_folder(environ, tmp_path, cub_folder):
    official = tmp_path / "SAT_CUB.pth.tar"
    official.write_bytes(b"")
    environ(SATLIB_OFFICIAL_CHECKPOINT=official)
    with pytest.raises(SettingsError, match="SATLIB_OFFICIAL_CHECKPOINT is evaluated on CUB: set SATLIB_CUB_ROOT"):
        read_settings()
    environ(SATLIB_CUB_ROOT=cub_folder)
    assert read_settings().official_checkpoint == official


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_cuda_without_a_device_names_the_variable(environ):
    environ(SATLIB_DEVICE="cuda")
    with pytest.raises(SettingsError, match="SATLIB_DEVICE='cuda': .*no CUDA device"):
        read_settings()


def test_setup_seeds_and_styles_the_figures(environ):
    import matplotlib.pyplot as plt

    plt.rcParams["font.size"] = 20
    settings = setup(seed=3)
    first = torch.rand(3)
    setup(seed=3)
    assert torch.equal(first, torch.rand(3))
    assert plt.rcParams["font.size"] == 9 and settings.device.type == "cpu"


# ----------------------------------------------------------------------------------------------
# recipes


def test_recipes_follow_the_switches(environ, cub_folder):
    settings = read_settings()
    tiny = settings.tiny_recipe()
    assert tiny.model.name == "sat_tiny_convstem" and tiny.data.img_size == 64 and tiny.train.epochs == 20
    assert tiny == load_config("synthetic_cpu", [*TINY_SAT, f"data.root={settings.stand_in()}"])
    assert (settings.stand_in() / "images.txt").is_file()
    assert settings.shared_recipe("train.lambda_area=0").train.lambda_area == 0
    with pytest.raises(SettingsError, match="SATLIB_CUB_ROOT is not set"):
        settings.cub_recipe()
    with pytest.raises(SettingsError, match="SATLIB_IMAGENET_ROOT is not set"):
        settings.imagenet_recipe()

    environ(SATLIB_CUB_ROOT=cub_folder)
    short = read_settings().shared_recipe()
    assert short == load_config("cub", [f"data.root={cub_folder}", *SHORT_RUN])
    environ(SATLIB_FULL_RUN=1)
    full = read_settings().shared_recipe()
    assert full == load_config("cub", [f"data.root={cub_folder}"])  # the paper's recipe as packaged


@pytest.fixture
def imagenet_folder(tmp_path):
    root = tmp_path / "ILSVRC"
    (root / "train").mkdir(parents=True)
    return root


def test_the_imagenet_recipe_is_the_official_step_split_as_its_four_gpus(environ, imagenet_folder):
    environ(SATLIB_IMAGENET_ROOT=imagenet_folder)
    settings = read_settings()
    config = settings.imagenet_recipe("train.eval_every=0")
    paper = load_config("imagenet")
    assert (config.train.batch_size, config.train.grad_accum) == (paper.train.batch_size // 4, 4)
    assert config.train.eval_every == 0 and config.data.root == str(imagenet_folder)
    notes = settings.recipe_notes(config)
    assert notes.startswith("where this run differs from the official imagenet code:")
    assert "area constraint" not in notes  # 4 accumulated micro-batches of 128: the official 4 GPUs x 128
    assert "ESTIMATE from FLOPs" in notes and "on 1x H100" in notes


def fake_gpu(monkeypatch, name: str, gib: float) -> torch.device:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(total_memory=int(gib * 2**30)))
    return torch.device("cuda")


@pytest.mark.parametrize(("name", "gib", "kind"), [
    ("NVIDIA A100-SXM4-40GB", 39.4, "A100-40GB"), ("NVIDIA A100-SXM4-80GB", 79.2, "A100"),
    ("NVIDIA L4", 22.5, "L4"), ("NVIDIA L40S", 44.5, "L40S"), ("NVIDIA H200", 139.8, "H200"),
    ("Tesla T4", 15.0, None)])
def test_a_gpu_is_recognised_by_name_and_memory(monkeypatch, name, gib, kind):
    assert gpu_kind(fake_gpu(monkeypatch, name, gib)) == kind
    assert gpu_kind(torch.device("cpu")) is None


def test_a_paper_recipe_is_split_to_fit_the_gpu(monkeypatch, environ, cub_folder):
    # DeiT-S as satlib.recipes.model_cost counts it: 75 MiB of activations an image, 22.4 M parameters
    monkeypatch.setattr(satlib.notebook, "_model_cost", lambda config: ModelCost(
        forward_gflop=9.5, train_gflop=28.4, activation_mib=75.0, parameters=22_357_832))
    environ(SATLIB_CUB_ROOT=cub_folder)
    settings = read_settings()
    on_a100 = replace(settings, device=fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", 39.4))
    paper = on_a100.cub_recipe()  # 256 images: 1 + 0.33 + 256 * 75 / 1024 = 20 GiB fit in 40
    assert (paper.train.batch_size, paper.train.grad_accum) == (256, 1)
    big = on_a100.cub_recipe("train.batch_size=1024")  # 76 GiB do not; two micro-batches of 512 (38.8) do
    assert (big.train.batch_size, big.train.grad_accum) == (512, 2)
    assert settings.cub_recipe("train.batch_size=1024").train.grad_accum == 1  # on a CPU: as configured


# ----------------------------------------------------------------------------------------------
# runs keyed by their config


@pytest.fixture
def tiny_run_config(tiny_data, tmp_path):
    return lambda **extra: load_config("synthetic_cpu", tiny_overrides(tiny_data, tmp_path / "ignored", **extra))


def test_a_run_is_trained_once_then_found_by_its_config(tmp_path, tiny_run_config, monkeypatch):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path / "cache")
    epochs_seen = []
    first = settings.run(tiny_run_config(), on_epoch=lambda record: epochs_seen.append(record["epoch"]))
    assert first.trained and epochs_seen == [1, 2]
    assert first.folder.parent == settings.cache / "runs" and first.checkpoint.is_file() and first.best.is_file()
    assert len(first.history()) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(satlib.train, "train", no_training)
    again = tiny_run_config()
    second = settings.run(again)
    assert not second.trained and second.folder == first.folder
    assert again.train.out == str(first.folder) and again.train.device == "cpu"
    model, config, payload = second.load()
    assert payload["epoch"] == 2 and config.model.num_classes == 3 and not model.training


def test_the_key_is_the_whole_config_but_the_output_folder(tmp_path, tiny_run_config):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    base = settings.run_dir(tiny_run_config())
    assert settings.run_dir(tiny_run_config(**{"train.out": str(tmp_path / "elsewhere")})) == base
    for change in ({"train.lr": 1e-3}, {"train.epochs": 3}, {"eval.thresholds": [0.5]},
                   {"model.kwargs": {"stem_widths": [8, 16, 16], "embed_dim": 32, "depth": 2, "num_heads": 2}}):
        assert settings.run_dir(tiny_run_config(**change)) != base, change
    smoke = Settings(device=torch.device("cpu"), cache_root=tmp_path, smoke=True)
    assert smoke.run_dir(tiny_run_config()) != base  # a capped run never stands in for a real one


def test_an_unfinished_or_foreign_run_is_trained_again(tmp_path, tiny_run_config, monkeypatch):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    folder = settings.run_dir(tiny_run_config())
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"interrupted")  # no finished.json: an interrupted run
    calls = []
    real_train = satlib.train.train
    monkeypatch.setattr(satlib.train, "train", lambda config, **kw: calls.append(config) or real_train(config, **kw))
    run = settings.run(tiny_run_config())
    assert run.trained and len(calls) == 1
    marker = json.loads((folder / FINISHED).read_text())
    assert marker == json.loads(json.dumps(settings.run_key(tiny_run_config())))
    (folder / FINISHED).write_text(json.dumps({"config": {}, "smoke": False}))  # another key in this folder
    assert settings.run(tiny_run_config()).trained and len(calls) == 2


def test_training_does_not_change_the_callers_config(tmp_path, tiny_run_config):
    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path)
    config = tiny_run_config(**{"model.num_classes": 7})  # the data has 3: train() corrects its own copy
    settings.run(config)
    assert config.model.num_classes == 7
    assert not settings.run(tiny_run_config(**{"model.num_classes": 7})).trained


def test_every_run_keeps_its_probe_maps_without_changing_the_run(tmp_path, tiny_run_config):
    from satlib.checkpoint import load_checkpoint
    from satlib.data.from_config import build_datasets
    from satlib.notebook import probe_indices

    settings = Settings(device=torch.device("cpu"), cache_root=tmp_path / "cache")
    run = settings.run(tiny_run_config())
    maps = run.epoch_maps()
    _, config, _ = run.load()
    _, test_set = build_datasets(config, train=False)
    assert maps["indices"].tolist() == probe_indices(test_set) == [0, 1, 2, 3, 4, 5]  # 3 classes of 2 test images
    assert maps["sat"].shape == maps["cam"].shape == (2, 6, 4, 4)  # 2 epochs, 32 px on a 4x4 grid
    final = load_checkpoint(run.checkpoint)

    plain = tiny_run_config(**{"train.out": str(tmp_path / "plain"), "train.device": "cpu"})
    satlib.train.train(plain, progress=False)  # the same run without the probe: the same weights
    alone = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    assert all(torch.equal(final["model"][k], alone["model"][k]) for k in alone["model"])


def test_explore_draws_the_initial_values_then_redraws_on_every_change():
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from satlib.notebook import explore

    drawn = []

    def draw(k, color):
        drawn.append((k, color))
        figure, ax = plt.subplots(figsize=(1, 1))
        ax.plot(range(k), color=color)
        return figure

    slider = widgets.IntSlider(value=3, min=1, max=9)
    assert explore(draw, k=slider, color=["red", "blue"]) == {"k": 3, "color": "red"}
    assert drawn == [(3, "red")]
    slider.value = 7
    assert drawn[-1] == (7, "red")
    assert plt.get_fignums() == []  # every figure drawn was closed after being shown
