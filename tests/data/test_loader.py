import socket

import pytest
import torch
import torch.distributed as dist

from satlib.data import build_dataset, build_loader, collate, default_workers
from satlib.data.io import decode_jpegs, decode_rgb, is_jpeg, read_bytes
from satlib.data.loader import DeviceLoader, finish_on_device

from data_fixtures import make_imagenet


def item(label, k=1, mask=False):
    out = {"image": torch.full((3, 4, 4), float(label)), "label": label, "boxes": torch.zeros(k, 4),
           "image_id": f"img{label}"}
    if mask:
        out["mask"] = torch.zeros(4, 4, dtype=torch.bool)
    return out


def test_collate_stacks_and_lists():
    batch = collate([item(0, 1, True), None, item(3, 2, True)])
    assert batch["images"].shape == (2, 3, 4, 4) and batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == [0, 3] and [b.shape[0] for b in batch["boxes"]] == [1, 2]
    assert batch["masks"].shape == (2, 4, 4) and batch["image_ids"] == ["img0", "img3"]
    assert batch["skipped"] == 1 and "ignores" not in batch
    assert collate([None, None]) is None


def test_default_workers_leave_a_small_cpu_box_to_the_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("satlib.data.loader.cpu_count", lambda: 2)
    assert default_workers() == 0
    monkeypatch.setattr("satlib.data.loader.cpu_count", lambda: 16)
    assert default_workers() == 4
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 7


def test_default_workers_use_a_gpu_hosts_cores(monkeypatch):
    """16 cores, one GPU: 15 workers (not 8); torchrun's processes share the machine's cores; a cap of 32."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("satlib.data.loader.cpu_count", lambda: 16)
    assert default_workers() == 15
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes on this machine, whatever each one sees
    monkeypatch.setattr("satlib.data.loader.cpu_count", lambda: 64)
    assert default_workers() == 15
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setattr("satlib.data.loader.cpu_count", lambda: 128)
    assert default_workers() == 32


def test_train_loader_is_seeded_and_drops_the_last_partial_batch(cub_root):
    train = build_dataset("cub", cub_root, "train", img_size=32, resize_size=40)
    orders = []
    for _ in range(2):
        loader = build_loader(train, 1, train=True, workers=0, seed=4)
        orders.append([b["image_ids"][0] for b in loader])
    assert orders[0] == orders[1] and sorted(orders[0]) == sorted(r.image_id for r in train.records)
    assert len(build_loader(train, 3, train=True, workers=0)) == 0
    assert len(build_loader(train, 3, train=False, workers=0)) == 1


@pytest.mark.spawns
def test_worker_processes_give_the_same_test_batch(cub_root):
    test = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40)
    a = next(iter(build_loader(test, 2, train=False, workers=0)))
    b = next(iter(build_loader(test, 2, train=False, workers=2)))
    assert torch.equal(a["images"], b["images"]) and a["image_ids"] == b["image_ids"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_sampler_splits_the_data(cub_root):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", world_size=1, rank=0)
    try:
        test = build_dataset("cub", cub_root, "test", img_size=32, resize_size=40)
        loader = build_loader(test, 1, train=True, distributed=True, workers=0, seed=2)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        loader.sampler.set_epoch(1)
        assert sorted(b["image_ids"][0] for b in loader) == sorted(r.image_id for r in test.records)
    finally:
        dist.destroy_process_group()


def test_batched_jpeg_decode_matches_single_decode(tmp_path):
    root = make_imagenet(tmp_path / "ILSVRC")
    paths = sorted((root / "train").rglob("*.JPEG"))[:3]
    png = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (5, 7), (10, 20, 30)).save(png)
    datas = [read_bytes(p) for p in paths] + [read_bytes(png)]
    assert [is_jpeg(d) for d in datas] == [True, True, True, False]
    batched = decode_jpegs(datas, "cpu")
    for data, image in zip(datas, batched):
        assert torch.equal(image, decode_rgb(data))
    assert batched[-1].shape == (3, 7, 5)


def test_deferred_decoding_gives_the_same_batch(tmp_path):
    root = make_imagenet(tmp_path / "ILSVRC")
    test = build_dataset("imagenet", root, "test", img_size=32, resize_size=40)
    expected = collate([test[0], test[1]])
    deferred = build_loader(test, 2, train=False, workers=0, decode_device="cpu")  # cpu: plain loader
    assert not isinstance(deferred, DeviceLoader)
    test.deferred_decode = True
    batch = finish_on_device(test, [test[0], test[1]], torch.device("cpu"))
    assert torch.equal(batch["images"], expected["images"])
    assert [b.tolist() for b in batch["boxes"]] == [b.tolist() for b in expected["boxes"]]


@pytest.mark.gpu
def test_device_loader_decodes_on_cuda(tmp_path):
    root = make_imagenet(tmp_path / "ILSVRC")
    test = build_dataset("imagenet", root, "test", img_size=32, resize_size=40)
    loader = build_loader(test, 2, train=False, workers=0, decode_device="cuda")
    assert isinstance(loader, DeviceLoader)
    batch = next(iter(loader))
    expected = collate([test[0], test[1]])
    assert batch["images"].is_cuda
    # nvJPEG and libjpeg may differ by a few levels per pixel
    assert (batch["images"].cpu() - expected["images"]).abs().max() < 0.2
    assert [b.cpu().tolist() for b in batch["boxes"]] == [b.tolist() for b in expected["boxes"]]


def test_a_worker_finishes_its_batch_straight_into_shared_memory(tmp_path, monkeypatch):
    """A worker's batch is made once, in shared memory (no private stack copied again to send it), and holds
    what the items hold."""
    from satlib.data import loader as loader_module

    root = make_imagenet(tmp_path / "ILSVRC")
    test = build_dataset("imagenet", root, "test", img_size=32, resize_size=40)
    samples = [test.sample(i) for i in range(len(test))]
    alone = loader_module.FinishBatches(test)(samples)
    monkeypatch.setattr(loader_module, "get_worker_info", lambda: object())  # as inside a loader worker
    in_worker = loader_module.FinishBatches(test)(samples)
    assert in_worker["images"].is_shared() and not alone["images"].is_shared()
    assert torch.equal(in_worker["images"], collate([test[i] for i in range(len(test))])["images"])


@pytest.mark.parametrize("protocol", ["sat", "wsoleval"])
def test_a_batch_is_its_items_and_ten_crop_resizes_once(tmp_path, monkeypatch, protocol):
    """Finishing a batch at once gives each item's bits (crops and flips from each image's seed); under the
    SAT protocol the ten-crop input and the centre crop come from one resize."""
    from satlib.data import dataset as dataset_module
    from satlib.data.loader import FinishBatches, augmentation_seed

    root = make_imagenet(tmp_path / "ILSVRC")
    train = build_dataset("imagenet", root, "train", img_size=16, resize_size=20, train_boxes=True)
    keys = [(i, augmentation_seed(3, 1, i)) for i in range(len(train))]
    batch = FinishBatches(train)([train.sample(key) for key in keys])
    items = collate([train[key] for key in keys])
    assert torch.equal(batch["images"], items["images"])
    assert [b.tolist() for b in batch["boxes"]] == [b.tolist() for b in items["boxes"]]
    resizes = []
    real = dataset_module.resize_each
    monkeypatch.setattr(dataset_module, "resize_each", lambda images, size: resizes.append(size) or real(images, size))
    test = build_dataset("imagenet", root, "test", img_size=32, resize_size=40, tencrop=True, protocol=protocol)
    batch = FinishBatches(test)([test.sample(i) for i in range(len(test))])
    assert resizes == ([(40, 40)] if protocol == "sat" else [(32, 32), (40, 40)])
    if protocol == "sat":
        assert torch.equal(batch["images"], batch["images_resized"][..., 4:36, 4:36])
