"""satlib.book.settings and satlib.book.recipes: the book's SATLIB_* switches, checked, and the recipes a
chapter asks for with them; `import satlib` never loads the book, and the book loads without ipywidgets."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from satlib.book import SHORT_RUN, TINY_SAT, SettingsError, read_settings, setup
from satlib.book.recipes import GPU_COST
from satlib.config import load_config

VARIABLES = ("SATLIB_DEVICE", "SATLIB_CUB_ROOT", "SATLIB_IMAGENET_ROOT", "SATLIB_FULL_RUN",
             "SATLIB_OFFICIAL_CHECKPOINT", "SATLIB_PRETRAINED", "SATLIB_SMOKE", "SATLIB_CACHE")


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


@pytest.mark.spawns
def test_satlib_never_imports_the_book_and_the_book_needs_no_ipywidgets():
    code = ("import sys; import satlib; print(sorted({'ipywidgets', 'satlib.book'} & set(sys.modules)))\n"
            "sys.modules['ipywidgets'] = None  # any import of it now fails\n"
            "from satlib.book import setup; print(setup.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "satlib.book.settings"]


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
    ("SATLIB_PRETRAINED", "/no/deit_small_patch16_224.pth",
     "SATLIB_PRETRAINED='/no/deit_small_patch16_224.pth': no such file (expected the ImageNet DeiT-S weights"),
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
    baseline = read_settings().shared_baseline("cam", "train.seed=1")
    assert baseline == load_config("cub", [f"data.root={cub_folder}", "model.name=cam_deit_small_patch16_224",
                                           "train.seed=1"])


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
    assert notes.endswith(GPU_COST) and "measured on" not in notes  # no memory measured on a CPU


def test_a_local_weights_file_replaces_the_download_in_the_paper_recipes(environ, tmp_path, cub_folder,
                                                                        imagenet_folder):
    weights = tmp_path / "deit_small_patch16_224-cd65a155.pth"
    weights.write_bytes(b"")
    environ(SATLIB_CUB_ROOT=cub_folder, SATLIB_IMAGENET_ROOT=imagenet_folder, SATLIB_PRETRAINED=weights)
    settings = read_settings()
    assert settings.pretrained == weights and "pretrained backbone deit_small_patch16_224" in settings.summary()
    for config in (settings.cub_recipe(), settings.imagenet_recipe(), settings.shared_baseline("tscam")):
        assert config.model.pretrained == str(weights)  # instead of "timm", which downloads
    assert settings.cub_recipe("model.pretrained=").model.pretrained == ""  # a recipe that asks for none keeps none
    assert settings.tiny_recipe().model.pretrained == ""  # the stand-in's tiny SAT trains from scratch
    environ(SATLIB_SMOKE=1)  # a smoke run drops timm's download, not a local file
    assert read_settings().cub_recipe().model.pretrained == str(weights)
    environ(SATLIB_PRETRAINED="", SATLIB_SMOKE=0)
    assert read_settings().cub_recipe().model.pretrained == "timm"


def test_a_weights_file_of_another_kind_is_refused(environ, tmp_path):
    notes = tmp_path / "deit_small_patch16_224.txt"
    notes.write_text("not weights")
    environ(SATLIB_PRETRAINED=notes)
    with pytest.raises(SettingsError, match=r"SATLIB_PRETRAINED=.*deit_small_patch16_224\.txt is not a \.pth or "):
        read_settings()
