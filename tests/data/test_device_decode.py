"""The device-decode loader's fallback to CPU decoding: warned once, counted, and still correct."""

import copy
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from satlib.data import build_dataset
from satlib.data import loader as loader_module
from satlib.data.loader import DecodeFallbacks, DecodeFallbackWarning, DeviceLoader, collate
from satlib.data.standins import make_standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return make_standin(tmp_path_factory.mktemp("decode") / "cub", "cub", num_classes=2, per_class=5)


def device_loader(root, batch_size: int = 3) -> DeviceLoader:
    """What build_loader(decode_device=...) builds, on the CPU: workers read bytes, batches decode together."""
    dataset = copy.copy(build_dataset("cub", root, "train", img_size=64, resize_size=72, hflip=False))
    dataset.deferred_decode = True
    return DeviceLoader(DataLoader(dataset, batch_size=batch_size, collate_fn=list), dataset, "cpu")


def test_failing_batched_decode_warns_once_counts_and_decodes_on_the_cpu(standin, monkeypatch):
    monkeypatch.setattr(loader_module, "FALLBACKS", DecodeFallbacks())

    def no_nvjpeg(datas, device):
        raise RuntimeError("nvjpeg: not available")

    loader = device_loader(standin)
    torch.manual_seed(0)
    expected = [batch["images"] for batch in loader]  # the batched decode, working
    monkeypatch.setattr(loader_module, "decode_jpegs", no_nvjpeg)
    with pytest.warns(DecodeFallbackWarning, match="nvjpeg: not available") as caught:
        torch.manual_seed(0)
        first = [batch["images"] for batch in loader]
    assert len([w for w in caught if w.category is DecodeFallbackWarning]) == 1  # 3 failing batches, 1 warning
    assert all(torch.equal(a, b) for a, b in zip(first, expected))  # the same images, decoded one by one
    assert (loader.fallbacks.batches, loader.fallbacks.images) == (3, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DecodeFallbackWarning)  # a second epoch, a second loader: no warning
        list(loader)
        list(device_loader(standin))
    assert (loader.fallbacks.batches, loader.fallbacks.images) == (6, 16)
    assert loader_module.FALLBACKS.batches == 9 and "nvjpeg: not available" in loader_module.FALLBACKS.first_error


def test_working_decode_counts_nothing(standin, monkeypatch):
    monkeypatch.setattr(loader_module, "FALLBACKS", DecodeFallbacks())
    loader = device_loader(standin)
    batches = list(loader)
    assert sum(len(b["labels"]) for b in batches) == 8 and loader.fallbacks == DecodeFallbacks()
    assert collate([None]) is None


@pytest.mark.parametrize("layout", ["cub", "openimages"])
def test_items_finished_on_the_decode_device_live_there(tmp_path, layout):
    """The transforms, the test boxes and the masks follow a device-decoded image (on `meta`: no CUDA here)."""
    from satlib.data.io import decode_rgb

    root = make_standin(tmp_path / layout, layout, num_classes=2, per_class=5)
    for split in ("train", "test"):
        dataset = build_dataset(layout, root, split, img_size=64, resize_size=72, tencrop=True,
                                with_masks=layout == "openimages" and split == "test")
        sample = dataset.load(dataset.records[0])  # masks come decoded on the CPU
        image = decode_rgb(sample.pop("data"))
        item = dataset.finish({**sample, "image": torch.empty(image.shape, dtype=image.dtype, device="meta")})
        tensors = {key: value for key, value in item.items() if isinstance(value, torch.Tensor)}
        assert {"image", "boxes", "image_resized"} <= set(tensors), tensors.keys()
        assert all(value.device.type == "meta" for value in tensors.values()), (split, tensors.keys())
