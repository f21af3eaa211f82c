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
    dataset.deferred_finish = dataset.deferred_decode = True
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
def test_batches_finished_on_the_decode_device_keep_their_pixels_there(tmp_path, layout):
    """Images decoded on a device are resized, cropped and normalised there (`meta` stands in for CUDA);
    boxes, labels and masks stay on the CPU, so finishing a batch moves nothing per item."""
    root = make_standin(tmp_path / layout, layout, num_classes=2, per_class=5)
    for split in ("train", "test"):
        dataset = build_dataset(layout, root, split, img_size=64, resize_size=72, tencrop=True, train_boxes=True,
                                with_masks=layout == "openimages" and split == "test")
        samples = [dataset.sample(i) for i in range(2)]  # decoded on the CPU here, masks too
        for sample in samples:
            sample["image"] = torch.empty(sample["image"].shape, dtype=torch.uint8, device="meta")
        batch = dataset.finish_batch(samples)
        assert batch["images"].device.type == "meta" and batch["images"].shape == (2, 3, 64, 64)
        if split == "test":
            assert batch["images_resized"].device.type == "meta"
        host = [batch["labels"], *batch["boxes"], *(batch[k] for k in ("masks", "ignores") if k in batch)]
        assert all(value.device.type == "cpu" for value in host), split


def test_jpeg_header_tells_what_nvjpeg_can_decode(tmp_path):
    """Baseline grey and colour JPEGs go to the batched device call; CMYK and progressive ones, and other
    formats, are decoded by the workers."""
    from PIL import Image

    from satlib.data.io import jpeg_header, read_bytes

    def encoded(mode: str, suffix: str = ".jpg", **save) -> torch.Tensor:
        path = tmp_path / f"{mode}{len(save)}{suffix}"
        Image.new(mode, (37, 21)).save(path, **save)
        return read_bytes(path)

    rgb, grey, cmyk = encoded("RGB"), encoded("L"), encoded("CMYK")
    progressive = encoded("RGB", progressive=True)
    assert (jpeg_header(rgb).width, jpeg_header(rgb).height) == (37, 21)
    assert [jpeg_header(d).device_decodable for d in (rgb, grey, cmyk, progressive)] == [True, True, False, False]
    assert jpeg_header(cmyk).components == 4 and not jpeg_header(progressive).baseline
    assert jpeg_header(encoded("RGB", ".png")) is None


def test_one_cmyk_jpeg_does_not_send_its_batch_to_the_cpu(tmp_path, monkeypatch):
    """The worker decodes the CMYK file; the batched call decodes the others: nothing falls back, the batch is
    the CPU loader's."""
    from PIL import Image

    monkeypatch.setattr(loader_module, "FALLBACKS", DecodeFallbacks())
    root = make_standin(tmp_path / "cub", "cub", num_classes=2, per_class=5)
    test = build_dataset("cub", root, "test", img_size=64, resize_size=72)
    cmyk = test.records[1].path
    Image.open(cmyk).convert("CMYK").save(cmyk, format="JPEG", quality=95)
    batched = []
    real = loader_module.decode_jpegs

    def recorded(datas, device):
        batched.append(len(datas))
        return real(datas, device)

    monkeypatch.setattr(loader_module, "decode_jpegs", recorded)
    deferred = copy.copy(test)
    deferred.deferred_finish = deferred.deferred_decode = True
    loader = DeviceLoader(DataLoader(deferred, batch_size=len(test), collate_fn=list), deferred, "cpu")
    first = next(iter(loader))
    assert batched == [len(test) - 1] and loader.fallbacks == DecodeFallbacks(batches=0, images=1)
    expected = next(iter(loader_module.build_loader(test, len(test), train=False, workers=0)))
    assert torch.equal(first["images"], expected["images"])
