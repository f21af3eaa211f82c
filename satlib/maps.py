"""Score any method's localization maps with both protocols: `evaluate_maps`.

The maps come as a `MapSet` (`satlib.mapfile`: a maps file read, or a model's maps), a {image id: map}
mapping, or a maps file's path.

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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from satlib.data import WSOLDataset, build_dataset
from satlib.data.cub import is_cub_layout
from satlib.data.metadata import has_metadata
from satlib.evaluation import PROTOCOLS, LocalizationEvaluator, default_thresholds
from satlib.evaluation.masks import IGNORE
from satlib.mapfile import MapSet, read_maps

HELDOUT_MODES = ("auto", "val", "test-part", "none")
HELDOUT_FRACTION = 0.2  # of each class of the test split, when the dataset has no held-out split
HELDOUT_SEED = 0


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
                  heldout: str = "auto", max_images: int | None = None, batch_size: int = 64,
                  device: str | torch.device = "cpu") -> MapScores:
    """Score `maps` (a `MapSet`, {image id: map} or a maps file) on the test split of the dataset at
    `data_root` with both protocols, thresholds chosen on the test split and on a held-out split.

    `dataset` ("cub", "imagenet", "openimages", "synthetic"), `protocol` (the maps' test geometry),
    `img_size` and `resize_size` default to the maps' `__meta__`, then to a CUB layout, SAT's
    geometry and the dataset's sizes. `thresholds` are `protocol`'s (default its own list, or the
    meta's); the other protocol uses its own. `heldout`: "auto" (the val split where the maps cover
    it, else a seeded part of the test split), "val", "test-part" or "none". `max_images` (default the
    meta's) scores the first images of each split only: a capped check of the code paths, as
    `eval.max_batches` caps a smoke run's evaluation. Bad input (a missing or unknown image id, a map
    that is not 2-D, NaN) raises a ValueError naming the id.
    """
    mapset = maps if isinstance(maps, MapSet) else read_maps(maps) if isinstance(maps, (str, Path)) \
        else MapSet(maps=dict(maps))
    meta, root = mapset.meta, Path(data_root)
    protocol = protocol or meta.get("protocol", "sat")
    name = dataset or meta.get("dataset") or _dataset_name(root)
    reader = "cub" if name == "synthetic" else name  # the synthetic set is a CUB-layout folder
    sizes = dict(img_size=img_size or meta.get("img_size"), resize_size=resize_size or meta.get("resize_size"))
    first = max_images or meta.get("max_images")
    test = _read_split(reader, root, "test", protocol, sizes, first)
    val = _read_split(reader, root, "val", protocol, sizes, first) if has_metadata(root, "val") else None
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
    if first:
        notes.append(f"capped: the first {first} images of each split only (a check of the code paths)")
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


def _read_split(name: str, root: Path, split: str, protocol: str, sizes: dict, first: int | None) -> WSOLDataset:
    """A split's records (its `first` ones) in the protocol's test geometry, with masks where every image has them."""
    common = dict(img_size=sizes["img_size"], resize_size=sizes["resize_size"], protocol=protocol, train=False)
    dataset = build_dataset(name, root, split, **common)
    # the records name their masks either way; with_masks makes `targets` read them
    dataset.with_masks = name == "openimages" or (bool(dataset.records) and all(
        r.mask_paths and all(p.is_file() for p in r.mask_paths) for r in dataset.records))
    return dataset.select(range(min(first, len(dataset)))) if first else dataset


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
