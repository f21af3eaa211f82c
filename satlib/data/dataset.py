"""`WSOLDataset` (records -> transformed items) and `build_dataset`, the one entry point.

An item is a dict::

    image        (3, H, W) float32, normalised with the model's mean/std
    label        int
    boxes        (K, 4) float32 xyxy in pixels of this image (K = 0 when the split has none); test items,
                 and training items of a dataset built with train_boxes=True
    image_id     str
    mask         (H, W) bool foreground        (with_masks=True)
    ignore       (H, W) bool ignore region     (with_masks=True, OpenImages)
    image_resized (3, R, R) float32            (tencrop=True: the resized image before the crop)

Test boxes are computed by the protocol's exact formula (`satlib.data.transforms`); training never
reads boxes, so a training item carries them (through the random crop and flip, as tv_tensors) only
when the dataset is built with `train_boxes=True` (figures, tests).

Loading is two steps, so that loaders can do the second once per batch: `sample(key)` reads one
record (bytes, decoded image or not, masks, checks) and `finish_batch(samples)` resizes, crops,
flips and normalises a batch of decoded images wherever they lie (a loader worker's CPU, the GPU).
`dataset[key]` is both for one item.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from satlib.data import cub, imagenet, metadata
from satlib.data.io import decode_mask, decode_rgb, image_size, jpeg_header, read_bytes
from satlib.data.records import DataError, Problems, Record, boxes_outside, log
from satlib.data.subsets import few_shot_indices
from satlib.data.synthetic import ensure_synthetic_dataset
from satlib.data.transforms import (
    IMAGENET,
    Normalization,
    centre_offset,
    check_protocol,
    crop_and_flip,
    draw_crop,
    normalized,
    resize_each,
    test_boxes,
    test_geometry,
    train_geometry,
)

DATASETS = ("cub", "imagenet", "openimages", "synthetic")
NUM_CLASSES = {"cub": 200, "imagenet": 1000, "openimages": 100}


class WSOLDataset(Dataset):
    """Images with a class label, boxes and optional masks, transformed for training or testing."""

    def __init__(self, records: list[Record], *, num_classes: int, train: bool, img_size: int = 224,
                 resize_size: int = 256, protocol: str = "sat", with_masks: bool = False,
                 tencrop: bool = False, mask_threshold: int = 127, class_names: Sequence[str] = (),
                 problems: Problems | None = None, name: str = "", hflip: bool = True,
                 normalization: Normalization = IMAGENET, train_boxes: bool = False):
        check_protocol(protocol)
        if img_size > resize_size and (train or protocol == "sat"):
            raise ValueError(f"img_size {img_size} is larger than resize_size {resize_size}")
        self.records = records
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.train, self.protocol, self.name = train, protocol, name
        self.img_size, self.resize_size = img_size, resize_size
        self.with_masks, self.tencrop, self.mask_threshold = with_masks, tencrop, mask_threshold
        self.problems = problems if problems is not None else Problems()
        self.normalization = normalization  # (mean, std): what `denormalize` needs to show an item
        self.hflip, self.train_boxes = hflip, train_boxes
        self.deferred_finish = False  # set by a loader that finishes whole batches: dataset[key] is `sample(key)`
        self.deferred_decode = False  # ... and decodes them on a device: JPEGs stay encoded bytes

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def skip_bad(self) -> bool:
        return self.problems.skip_bad

    @property
    def skipped(self) -> int:
        """How many rows/images were skipped (skip_bad=True); the reasons are in `skipped_messages`."""
        return self.problems.count

    @property
    def skipped_messages(self) -> list[str]:
        return self.problems.messages

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def select(self, indices: Sequence[int]) -> "WSOLDataset":
        """The same dataset restricted to `indices` (in that order)."""
        subset = copy.copy(self)
        subset.records = [self.records[i] for i in indices]
        return subset

    def few_shot(self, per_class: int, seed: int = 0) -> "WSOLDataset":
        """`per_class` images of every class (all of a class with fewer), drawn with `seed`."""
        return self.select(few_shot_indices(self.labels, per_class, seed))

    def check_images(self) -> None:
        """Read every image header: missing/unreadable files and boxes outside the image are reported.

        Under skip_bad the bad images are dropped (and counted); otherwise the first raises.
        """
        kept = []
        for record in self.records:
            try:
                w, h = image_size(record.path)
                self._check_record(record, w, h)
                if self.with_masks:
                    for mask_path in [*record.mask_paths, *([record.ignore_path] if record.ignore_path else [])]:
                        if not mask_path.is_file():
                            raise DataError(f"{mask_path}: mask file missing (for {record.source})")
            except DataError as err:
                message = str(err)
                self.problems.report(message if record.source in message
                                     else f"{message} (listed at {record.source})")
                continue
            kept.append(record)
        self.records = kept

    # -- loading -----------------------------------------------------------------------------
    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """Item `key`: an index, or (index, seed) from a `SeededSampler` (the random crop and flip draw from that
        seed, not from the process's generator). A loader that finishes batches gets the sample instead."""
        sample = self.sample(key)
        if sample is None or self.deferred_finish or self.deferred_decode:
            return sample
        return unbatch(self.finish_batch([sample]))

    def sample(self, key: int | tuple[int, int]) -> dict | None:
        """Record `key` read and checked, not transformed: record, seed, (w, h) size, masks, and the image
        decoded (3, h, w) uint8 on the CPU, or with `deferred_decode` a JPEG nvJPEG decodes left as bytes
        ("data"). A bad file raises a DataError naming it, or under skip_bad is logged and gives None."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        try:
            sample = {"record": record, "seed": seed}
            data = read_bytes(record.path, record.source)
            header = jpeg_header(data) if self.deferred_decode else None
            if header is not None and header.device_decodable:
                sample["data"], sample["size"] = data, (header.width, header.height)
            else:  # decoded here: on the CPU (a worker's), also what nvJPEG cannot decode (CMYK, progressive, PNG)
                sample["image"] = decode_rgb(data, record.path, record.source)
                sample["size"] = tuple(sample["image"].shape[:0:-1])
            self._check_record(record, *sample["size"])
            if self.with_masks:
                sample["mask"], sample["ignore"] = self._load_masks(record, sample["size"])
            return sample
        except DataError as err:
            if not self.skip_bad:
                raise
            log.warning("skipped while loading: %s", err)
            return None

    def finish_batch(self, samples: list[dict], *, out: torch.Tensor | None = None) -> dict:
        """Decoded samples (images (3, h, w) uint8, all on one device) -> a batch (`satlib.data.loader`'s keys).

        Per-pixel work runs once for the batch on the images' device: one resize per distinct image size,
        then the crops, flips and normalisation of the whole batch; `out` receives the (B, 3, crop, crop)
        float32 images (a loader worker passes shared memory). Labels, boxes and masks stay on the CPU.
        """
        records = [s["record"] for s in samples]
        batch = {"labels": torch.tensor([r.label for r in records], dtype=torch.long),
                 "image_ids": [r.image_id for r in records]}
        images = [s["image"] for s in samples]
        if self.train:
            crops = [self._crop_of(s) for s in samples]
            resized = resize_each(images, (self.resize_size, self.resize_size))
            batch["images"] = normalized(crop_and_flip(resized, crops, self.img_size), self.normalization, out=out)
            if self.train_boxes:
                batch["boxes"] = [self._train_boxes(s, crop) for s, crop in zip(samples, crops)]
            masks = [{k: train_geometry(tv_tensors.Mask(s[k]), self.resize_size, self.img_size, crop)
                      for k in ("mask", "ignore")} for s, crop in zip(samples, crops)] if self.with_masks else []
        else:
            batch.update(self._test_images(images, out))
            batch["boxes"] = [test_boxes(s["record"].boxes.reshape(-1, 4), s["size"], self.img_size,
                                         self.resize_size, self.protocol) for s in samples]
            masks = [{k: test_geometry(tv_tensors.Mask(s[k]), self.img_size, self.resize_size, self.protocol)
                      for k in ("mask", "ignore")} for s in samples] if self.with_masks else []
        if masks:
            batch["masks"] = torch.stack([m["mask"].as_subclass(torch.Tensor) > 0 for m in masks])
            batch["ignores"] = torch.stack([m["ignore"].as_subclass(torch.Tensor) > 0 for m in masks])
        return batch

    def _crop_of(self, sample: dict) -> tuple[int, int, bool]:
        with augmentation_rng(sample.get("seed")):
            return draw_crop(self.resize_size, self.img_size, self.hflip)

    def _train_boxes(self, sample: dict, crop: tuple[int, int, bool]) -> torch.Tensor:
        """The record's boxes through the random crop and flip (train_boxes=True), (K, 4) float32."""
        w, h = sample["size"]
        boxes = tv_tensors.BoundingBoxes(torch.tensor(sample["record"].boxes, dtype=torch.float32).reshape(-1, 4),
                                         format="XYXY", canvas_size=(h, w))
        return train_geometry(boxes, self.resize_size, self.img_size, crop).as_subclass(torch.Tensor).float()

    def _test_images(self, images: list[torch.Tensor], out: torch.Tensor | None) -> dict:
        """"images" (and with ten-crop "images_resized") of a test batch: "sat" resizes once to R x R and cuts the
        centre crop from it (ten-crop's resized image is that same resize), "wsoleval" resizes to the crop."""
        c, R = self.img_size, self.resize_size
        if self.protocol == "wsoleval":
            found = {"images": normalized(resize_each(images, (c, c)), self.normalization, out=out)}
            if self.tencrop:
                found["images_resized"] = normalized(resize_each(images, (R, R)), self.normalization)
            return found
        resized, at = resize_each(images, (R, R)), centre_offset(R, c)
        if not self.tencrop:
            return {"images": normalized(resized[..., at:at + c, at:at + c], self.normalization, out=out)}
        whole = normalized(resized, self.normalization)  # normalising is per pixel: crop after, same bits
        crop = whole[..., at:at + c, at:at + c]
        return {"images": out.copy_(crop) if out is not None else crop.contiguous(), "images_resized": whole}

    def targets(self, index: int) -> dict:
        """What scoring a map of test item `index` needs, without decoding its image: label, image_id,
        boxes (K, 4) and, with masks, mask and ignore (H, W) bool, exactly as `__getitem__` gives them.

        The image's size comes from the metadata or the file's header.
        """
        if self.train:
            raise ValueError("targets() reads a test split (train items are randomly cropped)")
        record = self.records[index]
        w, h = record.size if record.size is not None else image_size(record.path)
        self._check_record(record, w, h)
        item = {"label": record.label, "image_id": record.image_id,
                "boxes": test_boxes(record.boxes.reshape(-1, 4), (w, h), self.img_size, self.resize_size,
                                    self.protocol)}
        if self.with_masks:
            mask, ignore = self._load_masks(record, (w, h))  # checked against the image's size there
            for key, value in (("mask", mask), ("ignore", ignore)):  # the test geometry `finish_batch` applies
                out = test_geometry(tv_tensors.Mask(value), self.img_size, self.resize_size, self.protocol)
                item[key] = out.as_subclass(torch.Tensor) > 0
        return item

    def _check_record(self, record: Record, w: int, h: int) -> None:
        if record.size is not None and tuple(record.size) != (w, h):
            raise DataError(f"{record.size_source}: size {record.size[0]}x{record.size[1]} but "
                            f"{record.path} is {w}x{h}")
        message = boxes_outside(record, w, h)
        if message:
            raise DataError(message)

    def _load_masks(self, record: Record, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Union of the record's masks (> threshold) and its ignore region (ignore minus foreground), uint8,
        each checked against the image's (w, h) `size`."""
        if not record.mask_paths:
            raise DataError(f"{record.source}: no mask listed for {record.image_id!r} (with_masks=True)")
        fg = None
        for path in record.mask_paths:
            mask = decode_mask(path, record.source) > self.mask_threshold
            if fg is not None and mask.shape != fg.shape:
                raise DataError(f"{path}: mask is {tuple(mask.shape)}, other masks of "
                                f"{record.image_id!r} are {tuple(fg.shape)}")
            fg = mask if fg is None else fg | mask
        ignore = torch.zeros_like(fg)
        if record.ignore_path is not None:
            ignore = decode_mask(record.ignore_path, record.source) > self.mask_threshold
            if ignore.shape != fg.shape:
                raise DataError(f"{record.ignore_path}: ignore mask is {tuple(ignore.shape)}, "
                                f"foreground of {record.image_id!r} is {tuple(fg.shape)}")
            ignore = ignore & ~fg
        w, h = size
        if fg.shape != (h, w):
            raise DataError(f"{record.mask_paths[0]}: mask is {tuple(fg.shape)} but image {record.path} is {(h, w)}")
        return fg.to(torch.uint8), ignore.to(torch.uint8)


def unbatch(batch: dict) -> dict:
    """A batch of one (`finish_batch`) -> that item (the module docstring's keys)."""
    item = {"image": batch["images"][0], "label": int(batch["labels"][0]), "image_id": batch["image_ids"][0]}
    for key, item_key in (("boxes", "boxes"), ("masks", "mask"), ("ignores", "ignore"),
                          ("images_resized", "image_resized")):
        if key in batch:
            item[item_key] = batch[key][0]
    return item


@contextlib.contextmanager
def augmentation_rng(seed: int | None) -> Iterator[None]:
    """Inside the block torch's CPU generator (where the random transforms draw) is seeded `seed`; after it,
    as it was. Nothing when `seed` is None."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def build_dataset(name: str, root: str | Path, split: str, *, img_size: int | None = None,
                  resize_size: int | None = None, protocol: str = "sat", per_class: int | None = None,
                  seed: int = 0, skip_bad: bool = False, with_masks: bool = False, tencrop: bool = False,
                  train: bool | None = None, source: str = "auto",
                  metadata_root: str | Path | None = None, hflip: bool = True,
                  normalization: Normalization = IMAGENET, train_boxes: bool = False) -> WSOLDataset:
    """Build a dataset by name ("cub", "imagenet", "openimages", "synthetic") and split.

    Args:
        name: "synthetic" is the CUB layout; it is generated with the defaults when `root` is empty.
        root: the dataset folder (layouts in `satlib.data.cub`, `imagenet`, `metadata`).
        split: "train" or "test" ("val" where wsolevaluation metadata has it).
        img_size, resize_size: crop and resize sides; None -> 224 and img_size * 256 / 224
            (a synthetic dataset, whatever the name: both its own side, so the crop is a no-op).
        protocol: test geometry, "sat" (official SAT) or "wsoleval" (see `satlib.data.transforms`);
            OpenImages is resized to crop x crop under both (the official SAT OpenImage loader does so).
        per_class: keep that many images per class, drawn with `seed` (few-shot).
        skip_bad: log, count and drop bad rows and images instead of raising (`dataset.skipped`).
        with_masks: load foreground (and ignore) masks.
        tencrop: also return the resized image before the crop as "image_resized".
        train: train transforms; None -> split == "train".
        source: "auto", "official" (CUB layout) or "metadata" (wsolevaluation files).
        metadata_root: folder holding <split>/image_ids.txt ...; None -> root/metadata.
        hflip: random horizontal flips in the train transform (official: on).
        normalization: (mean, std) of the images the model expects (ImageNet's; CLIP backbones differ).
        train_boxes: training items carry their boxes through the random crop and flip (figures, tests;
            training never reads them, so by default they are not computed).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    metadata.check_split(split)
    root = Path(root)
    if name == "synthetic":  # the CUB layout, generated (with the defaults) when `root` is empty: here only
        ensure_synthetic_dataset(root)
        name = "cub"
    problems = Problems(skip_bad)
    records, classes, num_classes, mask_threshold = _read_records(name, root, split, source,
                                                                  metadata_root, problems)
    if name == "openimages":
        protocol = "wsoleval"
    native = _native_size(root) if name == "cub" else None  # a synthetic.json says
    img_size = img_size or native or 224
    resize_size = resize_size or native or round(img_size * 256 / 224)
    dataset = WSOLDataset(records, num_classes=num_classes, train=split == "train" if train is None else train,
                          img_size=img_size, resize_size=resize_size, protocol=protocol,
                          with_masks=with_masks, tencrop=tencrop, mask_threshold=mask_threshold,
                          class_names=classes, problems=problems, name=name, hflip=hflip,
                          normalization=normalization, train_boxes=train_boxes)
    if skip_bad:  # before the few-shot draw, so a subset still has per_class good images
        dataset.check_images()
    if per_class is not None:
        dataset = dataset.few_shot(per_class, seed)
    return dataset


def _read_records(name: str, root: Path, split: str, source: str, metadata_root, problems: Problems):
    """(records, class names, number of classes, mask threshold) for a dataset folder."""
    if source not in ("auto", "official", "metadata"):
        raise ValueError(f"unknown source {source!r}; expected 'auto', 'official' or 'metadata'")
    if not root.is_dir():
        raise DataError(f"dataset root missing: {root} (see data_scripts/ to download and prepare it)")
    use_metadata = source == "metadata" or (
        source == "auto" and metadata.has_metadata(root, split, metadata_root)
        and not (name == "cub" and cub.is_cub_layout(root) and split != "val")
        and not (name == "imagenet" and split == "train" and (root / "train").is_dir()))
    if name == "cub" and not use_metadata:
        records, classes = cub.read_cub(root, split, problems)
        return records, classes, len(classes), cub.MASK_THRESHOLD
    if name == "imagenet" and split == "train" and not use_metadata:
        records, classes = imagenet.read_class_folders(root, problems)
        return records, classes, len(classes), 127
    meta = metadata.metadata_dir(root, split, metadata_root)
    if not (meta / "image_ids.txt").is_file():
        raise DataError(f"{name} metadata missing: {meta}/image_ids.txt (set metadata_root, or run "
                        f"data_scripts/fetch_wsoleval_metadata.py)")
    num_classes = _classes_from_cub(root) or NUM_CLASSES.get(name, 0)
    image_root = root / "images" if (root / "images").is_dir() else root
    records = metadata.read_metadata(meta, image_root, num_classes, problems, mask_root=root)
    if name == "cub":
        for record in records:
            if not record.mask_paths:
                record.mask_paths = [root / "segmentations" / Path(record.image_id).with_suffix(".png")]
    threshold = metadata.MASK_THRESHOLD if name == "openimages" else cub.MASK_THRESHOLD
    return records, [], num_classes, threshold


def _classes_from_cub(root: Path) -> int:
    path = root / "classes.txt"
    return len(cub.read_classes(path, Problems())) if path.is_file() else 0


def _native_size(root: Path) -> int | None:
    """Image side recorded by the synthetic generator (synthetic.json), if any."""
    path = root / "synthetic.json"
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())["size"])
    except (ValueError, KeyError) as err:
        raise DataError(f"{path}: unreadable synthetic description: {err}") from None
