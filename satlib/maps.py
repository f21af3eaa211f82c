"""Score any method's localization maps with both protocols: `evaluate_maps`, and the maps file it reads.

A maps file is an `.npz` (or a folder of `.npy` files, an unzipped npz) holding one array per image,
named by the dataset's image id (CUB: `001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg`;
a wsolevaluation split: its `image_ids.txt` entry), and optionally:

    __image_ids__   (N,) str          the order of the two rows below
    __logits__      (N, classes)      class scores: Top-1/5 Loc and Top-1/5 Cls need them
    __labels__      (N,) int          checked against the dataset's labels
    __meta__        () str            JSON defaults for scoring: protocol, img_size, resize_size, dataset,
                                      thresholds (what `model_maps` records)

A map is (h, w) of any size and value range over the image as the protocol's test geometry shows it to
a model (`satlib.data.transforms`): under "sat" the centre img_size crop of the image resized to
resize_size x resize_size, under "wsoleval" the whole image resized to img_size x img_size. Each
protocol then treats the map as its own code does (`satlib.evaluation.boxes`):

    sat       min-max per map as given, (m - min) / (max - min + 1e-5), then bilinear to the crop
    wsoleval  bicubic to the crop, then min-max per map, (m - min) / max (a constant map becomes zeros)

so any value range scores the same (up to SAT's 1e-5 on maps whose range is that small).

Both rule sets score the same maps on the same boxes: the maps' geometry is `protocol`'s, and the
other protocol's numbers are its normalisation, thresholds and box rule on that geometry (where the
two geometries differ, e.g. CUB's 256 -> 224 crop, that is not its published setting; they coincide
when img_size == resize_size, as on the synthetic set, and on OpenImages, resized under both).
Without logits, Top-1/5 Loc and Top-1/5 Cls are not reported and SAT's threshold is chosen on
GT-known alone (the official rule adds Top-1 Loc). PxAP is reported where the dataset has masks
(OpenImages; CUB-layout folders with segmentations/, such as the synthetic set) and the thresholds
start at 0, so that every pixel's score counts: under wsolevaluation's own list.

Thresholds are chosen on the test split, as both published protocols do ("test"), and on a held-out
split ("heldout"), as wsolevaluation prescribes for hyper-parameters (its train-fullsup split):
the dataset's "val" split where it has one (wsolevaluation metadata: CUBV2, ImageNetV2, OpenImages)
and the maps cover it, then read on the whole test split; otherwise `HELDOUT_FRACTION` of each class
of the test split drawn with `HELDOUT_SEED` (the synthetic set and the official CUB layout have no
held-out split with boxes), then read on the rest of the test split. `MapScores.heldout_split` says
which, with the image counts.
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from satlib.build import build_test_split, test_loader
from satlib.data import WSOLDataset, build_dataset
from satlib.data.cub import is_cub_layout
from satlib.data.metadata import has_metadata
from satlib.evaluate import batch_outputs, scored_maps
from satlib.evaluation import PROTOCOLS, LocalizationEvaluator, default_thresholds
from satlib.evaluation.masks import IGNORE
from satlib.files import atomic_write
from satlib.info import LoadedModel
from satlib.runtime import Dist

RESERVED = ("__image_ids__", "__logits__", "__labels__", "__meta__")
HELDOUT_MODES = ("auto", "val", "test-part", "none")
HELDOUT_FRACTION = 0.2  # of each class of the test split, when the dataset has no held-out split
HELDOUT_SEED = 0


@dataclass
class MapSet:
    """Maps by image id, (h, w) each, with optional class scores and labels by image id, and scoring defaults."""

    maps: dict[str, np.ndarray]
    logits: dict[str, np.ndarray] | None = None  # (classes,) per image id
    labels: dict[str, int] | None = None
    meta: dict = field(default_factory=dict)
    source: str = "maps"  # the file's name, for error messages


# ----------------------------------------------------------------------------------------------
# the file: read, write, and a model's maps of a dataset


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
               tencrop: bool | None = None, batch_size: int | None = None) -> MapSet:
    """The maps a trained model is scored with (`satlib.evaluate.scored_maps`, float32, at the model's
    grid) and its logits, on the test split of `data_root` and on its "val" split where it has one.

    Dataset, protocol (the test geometry), thresholds, ten-crop logits and batch size are the model's
    config's unless given, as `satlib evaluate --checkpoint` takes them; they go into `meta`, so that
    `evaluate_maps` scores the maps as the checkpoint is scored.
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
    maps, logits, labels = {}, {}, {}
    for split in ("test", "val") if has_metadata(Path(data_root), "val") else ("test",):
        loader = test_loader(build_test_split(config, split=split), config, Dist(device=device))
        for batch in tqdm(loader, desc=f"maps ({split})", leave=False):
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
    return MapSet(maps=maps, logits=logits, labels=labels, meta=meta, source="model_maps")


# ----------------------------------------------------------------------------------------------
# scoring


@dataclass(frozen=True)
class MapScores:
    """Metrics of a set of maps under both protocols, thresholds chosen on the test split and on a held-out one."""

    geometry: str  # the protocol whose test-time geometry the maps and boxes are in
    test: dict[str, dict]  # protocol -> metrics, every threshold chosen on the test split (published protocols)
    heldout: dict[str, dict] | None  # protocol -> metrics, thresholds chosen on the held-out split; None: unavailable
    heldout_split: str  # which images chose the thresholds and which were scored, or why there is none
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"geometry": self.geometry, "test": self.test, "heldout": self.heldout,
                "heldout_split": self.heldout_split, "notes": list(self.notes)}

    def table(self, keys: Sequence[str] = ("top1_loc", "top5_loc", "gt_known", "maxboxacc", "maxboxacc_v2",
                                           "pxap", "top1_cls", "best_threshold", "images")) -> str:
        """A text table: one row per metric, a column per protocol and threshold choice."""
        columns = [(f"{p} test", self.test[p]) for p in PROTOCOLS]
        if self.heldout is not None:
            columns = [c for p in PROTOCOLS for c in ((f"{p} test", self.test[p]),
                                                       (f"{p} held-out", self.heldout[p]))]
        rows = [key for key in keys if any(key in metrics for _, metrics in columns)]
        width = max(len(name) for name, _ in columns) + 2
        lines = ["metric".ljust(14) + "".join(name.rjust(width) for name, _ in columns)]
        for key in rows:
            cells = [_cell(metrics.get(key)) for _, metrics in columns]
            lines.append(key.ljust(14) + "".join(cell.rjust(width) for cell in cells))
        return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, int) or value < 1 else f"{value:.2f}"


@dataclass
class _Split:
    """Images of one dataset split with their targets, and which evaluators each image feeds."""

    dataset: WSOLDataset
    roles: list[tuple[str, ...]]  # per image: "test" (the test split), "choose" and "scored" (its two parts)


def evaluate_maps(maps: MapSet | Mapping[str, np.ndarray] | str | Path, data_root: str | Path, *,
                  dataset: str | None = None, protocol: str | None = None, img_size: int | None = None,
                  resize_size: int | None = None, thresholds: Sequence[float] | None = None,
                  heldout: str = "auto", batch_size: int = 64, device: str | torch.device = "cpu") -> MapScores:
    """Score `maps` (a `MapSet`, {image id: map} or a maps file) on the test split of the dataset at
    `data_root` with both protocols, thresholds chosen on the test split and on a held-out split.

    `dataset` ("cub", "imagenet", "openimages", "synthetic"), `protocol` (the maps' test geometry),
    `img_size` and `resize_size` default to the maps' `__meta__`, then to a CUB layout, SAT's
    geometry and the dataset's sizes. `thresholds` are `protocol`'s (default its own list, or the
    meta's); the other protocol uses its own. `heldout`: "auto" (the val split where the maps cover
    it, else a seeded part of the test split), "val", "test-part" or "none". Bad input (a missing or
    unknown image id, a map that is not 2-D, NaN) raises a ValueError naming the id.
    """
    mapset = maps if isinstance(maps, MapSet) else read_maps(maps) if isinstance(maps, (str, Path)) \
        else MapSet(maps=dict(maps))
    meta, root = mapset.meta, Path(data_root)
    protocol = protocol or meta.get("protocol", "sat")
    name = dataset or meta.get("dataset") or _dataset_name(root)
    reader = "cub" if name == "synthetic" else name  # the synthetic set is a CUB-layout folder
    sizes = dict(img_size=img_size or meta.get("img_size"), resize_size=resize_size or meta.get("resize_size"))
    test = _read_split(reader, root, "test", protocol, sizes)
    val = _read_split(reader, root, "val", protocol, sizes) if has_metadata(root, "val") else None
    _check_ids(mapset, test, val)
    splits, heldout_split, scored = _plan(mapset, test, val, heldout)
    recorded = meta.get("thresholds") if meta.get("protocol", protocol) == protocol else None  # that protocol's
    chosen = {protocol: thresholds or recorded or default_thresholds(protocol)}
    evaluators = {(p, role): LocalizationEvaluator(thresholds=chosen.get(p), image_size=test.img_size, protocol=p)
                  for p in PROTOCOLS for role in ("test", "choose", "scored")}
    with_logits = mapset.logits is not None
    for batch_maps, targets, roles in _batches(mapset, splits, batch_size):
        _update(evaluators, roles, batch_maps.to(device), targets, mapset if with_logits else None, device)
    if scored == "scored":  # a part of the test split chose: the test split is both parts
        for p in PROTOCOLS:
            evaluators[p, "test"].merge(evaluators[p, "choose"]).merge(evaluators[p, "scored"])
    test_scores = {p: evaluators[p, "test"].compute() for p in PROTOCOLS}
    held = None if scored is None else \
        {p: evaluators[p, scored].compute(choose_on=evaluators[p, "choose"]) for p in PROTOCOLS}
    notes = [] if with_logits else ["no logits: Top-1/5 Loc and Cls are not reported, and SAT's threshold is "
                                    "chosen on GT-known alone (the official rule adds Top-1 Loc)"]
    if test.img_size != test.resize_size and protocol == "sat":
        notes.append(f"the wsoleval numbers apply its rules to SAT's {test.resize_size} -> {test.img_size} "
                     f"centre crop, not to the whole image wsolevaluation scores")
    return MapScores(geometry=protocol, test=test_scores, heldout=held, heldout_split=heldout_split,
                     notes=tuple(notes))


def _dataset_name(root: Path) -> str:
    if (root / "synthetic.json").is_file():
        return "synthetic"
    if is_cub_layout(root):
        return "cub"
    raise ValueError(f"{root}: not a CUB-layout folder; name the dataset (dataset=... or --dataset)")


def _read_split(name: str, root: Path, split: str, protocol: str, sizes: dict) -> WSOLDataset:
    """A split's records in the protocol's test geometry, with masks where every image has them."""
    common = dict(img_size=sizes["img_size"], resize_size=sizes["resize_size"], protocol=protocol, train=False)
    plain = build_dataset(name, root, split, **common)
    masked = name == "openimages" or (plain.records and all(
        r.mask_paths and all(p.is_file() for p in r.mask_paths) for r in plain.records))
    return build_dataset(name, root, split, with_masks=True, **common) if masked else plain


def _check_ids(mapset: MapSet, test: WSOLDataset, val: WSOLDataset | None) -> None:
    """One line naming the first missing or unknown image id, bad map, or mismatched label or logits row."""
    source = mapset.source
    test_ids = [r.image_id for r in test.records]
    known = set(test_ids) | ({r.image_id for r in val.records} if val is not None else set())
    missing = [i for i in test_ids if i not in mapset.maps]
    if missing:
        raise ValueError(f"{source}: no map for image id {missing[0]!r} ({len(missing)} of the {len(test_ids)} "
                         f"test images have none)")
    extra = [i for i in mapset.maps if i not in known]
    if extra:
        raise ValueError(f"{source}: image id {extra[0]!r} is not in the dataset's test"
                         f"{' or val' if val is not None else ''} split ({len(extra)} such maps)")
    for image_id, array in mapset.maps.items():
        mapset.maps[image_id] = _check_map(array, image_id, source)
    labels = {r.image_id: r.label for r in test.records + (val.records if val is not None else [])}
    for image_id in mapset.maps:
        if mapset.logits is not None and image_id not in mapset.logits:
            raise ValueError(f"{source}: __logits__ has no row for image id {image_id!r}")
        if mapset.logits is not None and not np.isfinite(mapset.logits[image_id]).all():
            raise ValueError(f"{source}: the logits of image id {image_id!r} hold NaN or inf")
        if mapset.labels is not None and image_id in mapset.labels and mapset.labels[image_id] != labels[image_id]:
            raise ValueError(f"{source}: image id {image_id!r} has label {mapset.labels[image_id]} in __labels__ "
                             f"but {labels[image_id]} in the dataset")


def _check_map(array, image_id: str, source: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{source}: the map of image id {image_id!r} has shape {array.shape}, expected (h, w)")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{source}: the map of image id {image_id!r} holds {array.dtype}, expected numbers")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{source}: the map of image id {image_id!r} holds NaN or inf")
    return array


def heldout_indices(labels: Sequence[int], fraction: float = HELDOUT_FRACTION, seed: int = HELDOUT_SEED) -> list[int]:
    """`fraction` of each class's images (at least one, never all of a class of two or more), drawn with a
    generator seeded by (seed, class); sorted indices."""
    labels = np.asarray(labels, dtype=np.int64)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = min(max(1, round(fraction * len(members))), len(members) - 1)
        chosen.append(np.random.default_rng([seed, int(label)]).choice(members, take, replace=False))
    return sorted(int(i) for i in np.concatenate(chosen)) if chosen else []


def _plan(mapset: MapSet, test: WSOLDataset, val: WSOLDataset | None,
          heldout: str) -> tuple[list[_Split], str, str | None]:
    """Which evaluators each image feeds, the held-out split's description (or why there is none), and the
    role of the images its numbers are read on (None: no held-out numbers)."""
    if heldout not in HELDOUT_MODES:
        raise ValueError(f"heldout={heldout!r}: expected one of {HELDOUT_MODES}")
    every = [("test",)] * len(test)
    covered = val is not None and all(r.image_id in mapset.maps for r in val.records)
    if heldout == "val" and not covered:
        why = "the dataset has no val split" if val is None else "the maps do not cover its val split"
        raise ValueError(f"{mapset.source}: heldout='val' but {why}")
    if heldout == "none":
        return [_Split(test, every)], "none (heldout='none')", None
    if heldout in ("auto", "val") and covered:
        return ([_Split(test, every), _Split(val, [("choose",)] * len(val))],
                f"val: thresholds chosen on the {len(val)} images of the val split (wsolevaluation's "
                f"train-fullsup), scored on the {len(test)} test images", "test")
    held = set(heldout_indices(test.labels))
    if not held:
        return [_Split(test, every)], "unavailable: no class of the test split has two images to split", None
    roles = [("choose",) if i in held else ("scored",) for i in range(len(test))]  # "test": both, merged
    reason = "the dataset has no val split" if val is None else "the maps do not cover the val split"
    return ([_Split(test, roles)],
            f"test-part: thresholds chosen on {len(held)} test images ({HELDOUT_FRACTION:.0%} of each class, "
            f"seed {HELDOUT_SEED}; {reason}), scored on the other {len(test) - len(held)}", "scored")


def _batches(mapset: MapSet, splits: list[_Split], batch_size: int) -> Iterator[tuple[torch.Tensor, list, tuple]]:
    """(maps (B, h, w), targets, roles) of images sharing a map shape and roles, in dataset order."""
    pending: dict[tuple, tuple[list, list]] = {}
    for split in splits:
        for index, roles in enumerate(split.roles):
            targets = split.dataset.targets(index)
            array = mapset.maps[targets["image_id"]]
            key = (array.shape, roles)
            group = pending.setdefault(key, ([], []))
            group[0].append(torch.from_numpy(array))
            group[1].append(targets)
            if len(group[0]) == batch_size:
                del pending[key]
                yield torch.stack(group[0]), group[1], roles
    for (_, roles), (arrays, targets) in pending.items():
        yield torch.stack(arrays), targets, roles


def _update(evaluators: dict, roles: tuple[str, ...], maps: torch.Tensor, targets: list[dict],
            mapset: MapSet | None, device) -> None:
    """Feed one batch to the evaluators of its roles, both protocols."""
    ids = [t["image_id"] for t in targets]
    labels = torch.tensor([t["label"] for t in targets], device=device)
    logits = None if mapset is None else torch.from_numpy(np.stack([mapset.logits[i] for i in ids])).float()
    masks = None
    if "mask" in targets[0]:
        masks = torch.stack([t["mask"].to(torch.uint8).masked_fill(t["ignore"], IGNORE) for t in targets])
    for (_, role), evaluator in evaluators.items():
        if role in roles:
            # PxAP histograms the scores from the first threshold up: it is read where that is 0 (wsoleval's list)
            with_masks = masks is not None and evaluator.pixel_ap is not None and evaluator.thresholds[0] == 0
            evaluator.update(maps, [t["boxes"] for t in targets], logits=None if logits is None else logits.to(device),
                             labels=None if logits is None else labels,
                             gt_masks=masks.to(device) if with_masks else None)
