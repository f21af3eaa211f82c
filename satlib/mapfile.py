"""The maps file: one localization map per image id, from any method, with optional class scores.

A maps file is an `.npz` (or a folder of `.npy` files, an unzipped npz) holding one array per image,
named by the dataset's image id (CUB: `001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg`;
a wsolevaluation split: its `image_ids.txt` entry), and optionally:

    __image_ids__   (N,) str          the order of the two rows below
    __logits__      (N, classes)      class scores: Top-1/5 Loc and Top-1/5 Cls need them
    __labels__      (N,) int          checked against the dataset's labels
    __meta__        () str            JSON defaults for scoring: protocol, img_size, resize_size, dataset,
                                      thresholds, max_images (what `model_maps` records)

`read_maps` reads one, `save_maps` writes one (atomically), `model_maps` makes one from a trained
model (its maps as `satlib evaluate` scores them, and its logits); `satlib.maps.evaluate_maps` scores it.
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from satlib.build import build_test_split, test_loader
from satlib.data.metadata import has_metadata
from satlib.evaluate import batch_outputs, scored_maps
from satlib.evaluation import default_thresholds
from satlib.files import atomic_write
from satlib.info import LoadedModel
from satlib.runtime import Dist

RESERVED = ("__image_ids__", "__logits__", "__labels__", "__meta__")


@dataclass
class MapSet:
    """Maps by image id, (h, w) each, with optional class scores and labels by image id, and scoring defaults."""

    maps: dict[str, np.ndarray]
    logits: dict[str, np.ndarray] | None = None  # (classes,) per image id
    labels: dict[str, int] | None = None
    meta: dict = field(default_factory=dict)
    source: str = "maps"  # the file's name, for error messages


def read_maps(path: str | Path) -> MapSet:
    """A maps file (`.npz`) or folder of `.npy` files (see the module docstring) as a `MapSet`."""
    path = Path(path)
    if path.is_dir():
        arrays = {p.relative_to(path).with_suffix("").as_posix(): np.load(p, allow_pickle=False)
                  for p in sorted(path.rglob("*.npy"))}
    elif path.is_file():
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    else:
        raise FileNotFoundError(f"maps not found: {path} (an .npz file or a folder of .npy files)")
    return mapset_from_arrays(arrays, source=str(path))


def mapset_from_arrays(arrays: Mapping[str, np.ndarray], source: str = "maps") -> MapSet:
    """The arrays of a maps file (keys as in the module docstring) as a `MapSet`, rows checked."""
    arrays = dict(arrays)
    extras = {key: arrays.pop(key) for key in RESERVED if key in arrays}
    unknown = [key for key in arrays if key.startswith("__") and key.endswith("__")]
    if unknown:
        raise ValueError(f"{source}: unknown reserved key {unknown[0]!r} (reserved: {', '.join(RESERVED)})")
    meta = json.loads(str(extras["__meta__"])) if "__meta__" in extras else {}
    rows = [key for key in ("__logits__", "__labels__") if key in extras]
    if rows and "__image_ids__" not in extras:
        raise ValueError(f"{source}: {rows[0]} needs __image_ids__, the image id of each row")
    ids = [str(i) for i in extras.get("__image_ids__", np.array([], dtype=str)).reshape(-1)]
    for key in rows:
        if len(extras[key]) != len(ids):
            raise ValueError(f"{source}: {key} has {len(extras[key])} rows for {len(ids)} __image_ids__")
    logits = labels = None
    if "__logits__" in extras:
        table = np.asarray(extras["__logits__"])
        if table.ndim != 2:
            raise ValueError(f"{source}: __logits__ has shape {table.shape}, expected (images, classes)")
        logits = dict(zip(ids, table))
    if "__labels__" in extras:
        labels = {image_id: int(label) for image_id, label in zip(ids, np.asarray(extras["__labels__"]))}
    return MapSet(maps=arrays, logits=logits, labels=labels, meta=meta, source=source)


def save_maps(path: str | Path, maps: MapSet) -> Path:
    """Write `maps` as an `.npz` (atomically): one `<image id>.npy` entry per map, and the reserved rows."""
    arrays = dict(maps.maps)
    ids = sorted(maps.logits or maps.labels or {})
    if maps.logits and maps.labels and set(maps.logits) != set(maps.labels):
        raise ValueError(f"{maps.source}: logits and labels must name the same image ids (one __image_ids__ row each)")
    if ids:
        arrays["__image_ids__"] = np.array(ids, dtype=str)
    if maps.logits:
        arrays["__logits__"] = np.stack([maps.logits[i] for i in ids])
    if maps.labels:
        arrays["__labels__"] = np.array([maps.labels[i] for i in ids], dtype=np.int64)
    if maps.meta:
        arrays["__meta__"] = np.array(json.dumps(maps.meta))

    def write(file) -> None:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)

    return atomic_write(path, write)


@torch.no_grad()
def model_maps(loaded: LoadedModel, data_root: str | Path, *, dataset: str | None = None,
               protocol: str | None = None, thresholds: Sequence[float] | None = None,
               tencrop: bool | None = None, batch_size: int | None = None, progress: bool = False) -> MapSet:
    """The maps a trained model is scored with (`satlib.evaluate.scored_maps`, float32, at the model's
    grid) and its logits, on the test split of `data_root` and on its "val" split where it has one.

    Dataset, protocol (the test geometry), thresholds, ten-crop logits and batch size are the model's
    config's unless given, as `satlib evaluate --checkpoint` takes them; they go into `meta`, so that
    `evaluate_maps` scores the maps as the checkpoint is scored. A config with `eval.max_batches` (a
    SATLIB_SMOKE run) maps the first batches of each split only, as its evaluation scores them, and
    records that as `max_images`. `progress` shows a bar per split.
    """
    model, info = loaded
    config = copy.deepcopy(info.config)
    config.data.root = str(data_root)
    config.data.dataset = dataset or config.data.dataset
    config.eval.protocol = protocol or config.eval.protocol
    config.eval.thresholds = list(thresholds or config.eval.thresholds)
    config.eval.tencrop = config.eval.tencrop if tencrop is None else tencrop
    config.eval.batch_size = batch_size or config.eval.batch_size
    device = next(model.parameters()).device
    capped = config.eval.max_batches  # a smoke run's cap on every evaluation (satlib.config.apply_smoke)
    maps, logits, labels = {}, {}, {}
    for split in ("test", "val") if has_metadata(Path(data_root), "val") else ("test",):
        loader = test_loader(build_test_split(config, split=split), config, Dist(device=device))
        batches = islice(loader, capped or None)
        for batch in tqdm(batches, desc=f"maps ({split})", leave=False, disable=not progress):
            if batch is None:  # every image of the batch was unreadable (data.skip_bad)
                continue
            batch_labels = batch["labels"].to(device)
            out, scores = batch_outputs(model, batch, config, device)
            for i, image_id in enumerate(batch["image_ids"]):
                maps[image_id] = scored_maps(out, batch_labels)[i].float().cpu().numpy()
                logits[image_id] = scores[i].cpu().numpy()
                labels[image_id] = int(batch["labels"][i])
    meta = {"model": info.name, "dataset": config.data.dataset, "protocol": config.eval.protocol,
            "img_size": config.data.img_size, "resize_size": config.data.resize_size,
            "thresholds": list(config.eval.thresholds or default_thresholds(config.eval.protocol)),
            "tencrop": config.eval.tencrop}
    if capped:
        meta["max_images"] = capped * config.eval.batch_size
    return MapSet(maps=maps, logits=logits, labels=labels, meta=meta, source="model_maps")
