"""The embedded synthetic WSOL dataset, written in the official CUB-200-2011 layout (+ segmentations/).

Each image holds one object whose *shape* is its class, drawn in a random colour from the same
distribution for every class, at a random size and position, on a muted textured background with
class-neutral distractors (strokes and irregular blobs in the same colours). Colour, position and
texture carry no class information, so a classifier must look at the object's outline, and boxing
the object needs more than a fixed prior (the trivial baselines stay well below 30% GT-known).

variant="shapes": classes are silhouettes (`SHAPES`: disc, triangle, square, star, cross, ring,
crescent, heart, tee, hourglass). variant="parts": every object is the same elliptic body with a
small part (a "beak", `PARTS`) on one side, and only the part's shape is the class; the GT box and
mask cover the whole object, and the part's own box is written to part_boxes.txt. It shows a CAM
that boxes the part only, where SAT should cover the object.
variant="fills": a pretraining set of up to 64 clearly learnable classes, silhouette x fill pattern
(`FILL_SHAPES` x `FILLS`, e.g. "arrow_checker"), drawn like the shapes; none of its silhouettes is one
of the first six `SHAPES` (the demo's classes), so a backbone pretrained on it has not seen them.

Same arguments and seed -> byte-identical files (fixed PNG settings, one generator per image).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from einops import rearrange
from PIL import Image, ImageDraw

from satlib.data.cub import CubRow, read_id_table, write_box_table, write_cub_tables
from satlib.data.records import DataError, Problems
from satlib.files import atomic_dir, atomic_write_text

SHAPES = ("disc", "triangle", "square", "star", "cross", "ring", "crescent", "heart", "tee", "hourglass")
PARTS = ("triangle", "square", "disc", "cross", "star", "fork", "ring", "tee")
FILL_SHAPES = ("crescent", "chevron", "tee", "hourglass", "bar", "ell", "arrow", "semicircle")
FILLS = ("solid", "stripes_h", "stripes_v", "stripes_diag", "checker", "dots", "split", "gradient")
VARIANTS = ("shapes", "parts", "fills")
FORMAT_VERSION = 1

Polygon = tuple[np.ndarray, int]  # (n, 2) vertices (x, y; y down) and fill: 1 paints, 0 erases


@dataclass(frozen=True)
class SynthConfig:
    """Generator knobs (defaults in brackets); sizes are fractions of the image side.

    Args:
        num_classes: classes, at most len(SHAPES) = 10 (len(PARTS) = 8 for "parts", 64 for "fills") [6]
        per_class: images per class, train + test [200]
        size: image side in pixels [96]
        seed: everything derives from it [0]
        variant: "shapes", "parts" or "fills" ["shapes"]
        test_fraction: share of each class in the test split [0.2]
        object_size: range of the object's longest side before rotation [(0.15, 0.6); parts (0.45, 0.7);
            fills (0.3, 0.7)]
        max_rotation: degrees, uniform in +-max [20]
        max_aspect: log aspect-ratio jitter, uniform in +-max [0.15]
        background: range of the background blob colours, per channel [(96, 160)]
        background_cells: blob grid per side (smaller = larger blobs) [4]
        noise: std of the Gaussian pixel noise over the whole image [8.0]
        distractors: range of the number of distractors, inclusive [(0, 2); parts (0, 1)]
        distractor_size: range of a distractor's extent [(0.15, 0.4)]
        colors: range of object and distractor colours, per channel [(0, 255)]
        min_contrast: least max-channel distance of an object/distractor colour from the background mean [64]
        part_size: "parts": the part's radius relative to the body's half-length [0.5]
        part_color: "parts": "own" (a second colour from the same distribution) or "same" as the body ["own"]
    """

    num_classes: int = 6
    per_class: int = 200
    size: int = 96
    seed: int = 0
    variant: str = "shapes"
    test_fraction: float = 0.2
    object_size: tuple[float, float] | None = None
    max_rotation: float = 20.0
    max_aspect: float = 0.15
    background: tuple[int, int] = (96, 160)
    background_cells: int = 4
    noise: float = 8.0
    distractors: tuple[int, int] | None = None
    distractor_size: tuple[float, float] = (0.15, 0.4)
    colors: tuple[int, int] = (0, 255)
    min_contrast: int = 64
    part_size: float = 0.5
    part_color: str = "own"

    def resolved(self) -> "SynthConfig":
        """Check the knobs and fill the variant's default object size."""
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {VARIANTS}")
        names = variant_classes(self.variant)
        if not 1 <= self.num_classes <= len(names):
            raise ValueError(f"num_classes must be 1..{len(names)} for variant {self.variant!r}, "
                             f"got {self.num_classes}")
        if self.per_class < 2 or self.size < 16:
            raise ValueError(f"need per_class >= 2 and size >= 16, got {self.per_class} and {self.size}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        size = self.object_size or DEFAULT_OBJECT_SIZE[self.variant]
        distractors = self.distractors or ((0, 1) if self.variant == "parts" else (0, 2))
        if not 0 < size[0] <= size[1] <= 1:
            raise ValueError(f"object_size must satisfy 0 < low <= high <= 1, got {size}")
        if self.part_color not in ("own", "same"):
            raise ValueError(f"part_color must be 'own' or 'same', got {self.part_color!r}")
        if self.colors[1] - self.colors[0] < 2 * self.min_contrast:
            raise ValueError(f"colors {self.colors} too narrow for min_contrast {self.min_contrast}")
        if not 0 <= distractors[0] <= distractors[1]:
            raise ValueError(f"distractors must satisfy 0 <= low <= high, got {distractors}")
        return SynthConfig(**{**asdict(self), "object_size": tuple(size), "distractors": tuple(distractors)})

    @property
    def class_names(self) -> list[str]:
        return list(variant_classes(self.variant)[: self.num_classes])


DEFAULT_OBJECT_SIZE = {"shapes": (0.15, 0.6), "parts": (0.45, 0.7), "fills": (0.3, 0.7)}


def variant_classes(variant: str) -> list[str]:
    """Every class name a variant can draw, in label order ("fills": silhouette-major, `FILLS` inside)."""
    if variant == "shapes":
        return list(SHAPES)
    if variant == "parts":
        return [f"beak_{part}" for part in PARTS]
    return [f"{shape}_{fill}" for shape in FILL_SHAPES for fill in FILLS]


# -- shapes, in unit coordinates -------------------------------------------------------------------
def _circle(cx: float = 0.0, cy: float = 0.0, r: float = 1.0, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _regular(k: int, r: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.arange(k) * 2 * np.pi / k
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.42) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _heart(n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1) / 17


def _normalized(polygons: list[Polygon]) -> list[Polygon]:
    """Centre the painted extent on 0 and scale its longest side to 2 (so it spans [-1, 1])."""
    painted = np.concatenate([v for v, fill in polygons if fill])
    low, high = painted.min(0), painted.max(0)
    centre, scale = (low + high) / 2, 2 / (high - low).max()
    return [((v - centre) * scale, fill) for v, fill in polygons]


def shape_polygons(name: str) -> list[Polygon]:
    """A class silhouette as painted/erased polygons spanning [-1, 1] on its longest side."""
    shapes = {
        "disc": [(_circle(), 1)],
        "triangle": [(_regular(3), 1)],
        "square": [(_rect(-1, -1, 1, 1), 1)],
        "star": [(_star(), 1)],
        "cross": [(_rect(-1, -0.3, 1, 0.3), 1), (_rect(-0.3, -1, 0.3, 1), 1)],
        "ring": [(_circle(), 1), (_circle(r=0.55), 0)],
        "crescent": [(_circle(), 1), (_circle(cx=0.45, cy=-0.25, r=0.85), 0)],
        "heart": [(_heart(), 1)],
        "tee": [(_rect(-1, -1, 1, -0.45), 1), (_rect(-0.28, -1, 0.28, 1), 1)],
        "hourglass": [(np.array([[-1, -1], [1, -1], [0.15, 0], [1, 1], [-1, 1], [-0.15, 0]], float), 1)],
        "fork": [(_rect(-1, -0.25, 0, 0.25), 1), (_rect(-0.2, -1, 1, -0.55), 1), (_rect(-0.2, 0.55, 1, 1), 1),
                 (_rect(-0.2, -1, 0.15, 1), 1)],
        "chevron": [(np.array([[-1, -1], [0, 0], [1, -1], [1, -0.35], [0, 0.65], [-1, -0.35]], float), 1)],
        "bar": [(_rect(-1, -0.3, 1, 0.3), 1)],
        "ell": [(_rect(-1, -1, -0.4, 1), 1), (_rect(-1, 0.4, 0.6, 1), 1)],
        "arrow": [(np.array([[-1, -0.22], [0.2, -0.22], [0.2, -0.6], [1, 0], [0.2, 0.6], [0.2, 0.22], [-1, 0.22]],
                            float), 1)],
        "semicircle": [(_circle(n=48)[:25], 1)],  # the half with y >= 0, closed by its diameter
    }
    if name not in shapes:
        raise ValueError(f"unknown shape {name!r}")
    return _normalized(shapes[name])


def bird_polygons(part: str, part_radius: float = 0.5) -> tuple[list[Polygon], list[Polygon]]:
    """The "parts" object: an elliptic body (semi-axes 1, 0.6) with a short neck, and a part on the
    neck's end pointing right; body and neck are the same for every class, only the part differs."""
    centre = 1.0 + 1.2 * part_radius
    body = [(_circle(r=1.0) * [1.0, 0.6], 1), (_rect(0.8, -0.12, centre, 0.12), 1)]
    rotate = np.array([[0.0, -1.0], [1.0, 0.0]])  # shapes point up; turn them to point right (+x)
    offset = np.array([centre, 0.0])
    part_polys = [((v @ rotate.T) * part_radius + offset, fill) for v, fill in shape_polygons(part)]
    painted = np.concatenate([v for v, fill in body + part_polys if fill])
    low, high = painted.min(0), painted.max(0)
    centre, scale = (low + high) / 2, 2 / (high - low).max()
    return ([((v - centre) * scale, fill) for v, fill in body],
            [((v - centre) * scale, fill) for v, fill in part_polys])


# -- drawing ---------------------------------------------------------------------------------------
def _place(polygons: list[list[Polygon]], rng: np.random.Generator, cfg: SynthConfig,
           scale_range: tuple[float, float]) -> list[list[Polygon]]:
    """Jitter aspect, rotate, mirror, scale to a random size and translate inside the image."""
    side = cfg.size
    extent = rng.uniform(*scale_range) * side / 2
    aspect = np.exp(rng.uniform(-cfg.max_aspect, cfg.max_aspect))
    theta = np.deg2rad(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    linear = rot @ np.diag([mirror * aspect, 1 / aspect]) * extent
    moved = [[(v @ linear.T, fill) for v, fill in group] for group in polygons]
    painted = np.concatenate([v for group in moved for v, fill in group if fill])
    low, high = painted.min(0), painted.max(0)
    shift = np.array([rng.uniform(-low[0], max(-low[0], side - 1 - high[0])),
                      rng.uniform(-low[1], max(-low[1], side - 1 - high[1]))])
    return [[(v + shift, fill) for v, fill in group] for group in moved]


def _raster(polygons: list[Polygon], size: int) -> np.ndarray:
    """Polygons -> (size, size) bool mask (painted minus erased, in order)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for vertices, fill in polygons:
        draw.polygon([tuple(p) for p in vertices.tolist()], fill=255 if fill else 0)
    return np.asarray(canvas) > 0


def _color(rng: np.random.Generator, cfg: SynthConfig, background_mean: np.ndarray) -> np.ndarray:
    """A colour from cfg.colors at least cfg.min_contrast (max channel) away from the background mean."""
    low, high = cfg.colors
    for _ in range(64):
        color = rng.integers(low, high + 1, size=3)
        if np.abs(color - background_mean).max() >= cfg.min_contrast:
            return color
    return np.where(background_mean > (low + high) / 2, low, high)


def _background(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """Smooth blobs of muted colours, (size, size, 3) float."""
    cells = rng.integers(cfg.background[0], cfg.background[1] + 1,
                         size=(cfg.background_cells, cfg.background_cells, 3), dtype=np.uint8)
    blobs = Image.fromarray(cells, "RGB").resize((cfg.size, cfg.size), Image.Resampling.BICUBIC)
    return np.asarray(blobs).astype(np.float64)


def _distractor(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """A class-neutral distractor mask: a curved stroke or an irregular blob."""
    side = cfg.size
    extent = rng.uniform(*cfg.distractor_size) * side
    centre = rng.uniform(0, side - 1, size=2)
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    if rng.random() < 0.5:
        steps = rng.integers(3, 6)
        angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.uniform(-1.2, 1.2, size=steps))
        points = centre + np.cumsum(np.stack([np.cos(angles), np.sin(angles)], 1) * extent / steps, 0)
        draw.line([tuple(p) for p in np.vstack([centre, points]).tolist()], fill=255,
                  width=int(rng.integers(2, 5)), joint="curve")
    else:
        k = 11
        t = np.sort(rng.uniform(0, 2 * np.pi, size=k))
        r = rng.uniform(0.5, 1.0, size=k) * extent / 2
        points = centre + np.stack([r * np.cos(t), r * np.sin(t)], 1)
        draw.polygon([tuple(p) for p in points.tolist()], fill=255)
    return np.asarray(canvas) > 0


def draw_example(cfg: SynthConfig, label: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One image (size, size, 3) uint8, its object mask (size, size) bool and, for "parts", the part mask."""
    image = _background(rng, cfg)
    mean = image.mean(axis=(0, 1))  # (3,) background colour
    for _ in range(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1)):
        image[_distractor(rng, cfg)] = _color(rng, cfg, mean)
    if cfg.variant == "fills":
        return _draw_filled(image, cfg, label, rng, mean)
    if cfg.variant == "shapes":
        (placed,) = _place([shape_polygons(SHAPES[label])], rng, cfg, cfg.object_size)
        mask, part = _raster(placed, cfg.size), None
    else:
        body, part_polys = _place(list(bird_polygons(PARTS[label], cfg.part_size)), rng, cfg, cfg.object_size)
        part = _raster(part_polys, cfg.size)
        mask = _raster(body, cfg.size) | part
    image[mask] = _color(rng, cfg, mean)
    if part is not None and cfg.part_color == "own":
        image[part] = _color(rng, cfg, mean)
    image += rng.normal(0.0, cfg.noise, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask, part


def _draw_filled(image: np.ndarray, cfg: SynthConfig, label: int, rng: np.random.Generator, mean: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, None]:
    """The "fills" object on `image` (the background drawn): silhouette `FILL_SHAPES[label // 8]` in two
    colours mixed by `fill_pattern(FILLS[label % 8])`; returns what `draw_example` does."""
    shape, fill = divmod(label, len(FILLS))
    (placed,) = _place([shape_polygons(FILL_SHAPES[shape])], rng, cfg, cfg.object_size)
    mask = _raster(placed, cfg.size)
    first = _color(rng, cfg, mean)
    second = _second_color(rng, cfg, mean, first)
    weight = rearrange(fill_pattern(FILLS[fill], mask, rng), "h w -> h w 1")
    image[mask] = ((1 - weight) * first + weight * second)[mask]
    image += rng.normal(0.0, cfg.noise, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask, None


def _second_color(rng: np.random.Generator, cfg: SynthConfig, background_mean: np.ndarray,
                  first: np.ndarray) -> np.ndarray:
    """A colour like `_color`'s that is also at least cfg.min_contrast (max channel) away from `first`."""
    for _ in range(64):
        color = _color(rng, cfg, background_mean)
        if np.abs(color - first).max() >= cfg.min_contrast:
            return color
    return cfg.colors[0] + cfg.colors[1] - first


def fill_pattern(fill: str, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The second colour's weight at every pixel for a fill of `FILLS` over the object `mask`, (H, W) bool
    -> (H, W) float in [0, 1]: stripes, checks and dots of a width that follows the object's size (an
    eighth of its longest side, at least 2 pixels) at a random phase; a two-colour split and a gradient
    along a random direction through the object."""
    x0, y0, x1, y1 = mask_box(mask)
    width = max(2.0, round(max(x1 - x0, y1 - y0) / 8))
    rows, cols = np.mgrid[0:mask.shape[0], 0:mask.shape[1]].astype(np.float64)
    xs, ys = cols + rng.uniform(0, 2 * width), rows + rng.uniform(0, 2 * width)
    angle = rng.uniform(0, 2 * np.pi)
    along = (cols - (x0 + x1) / 2) * np.cos(angle) + (rows - (y0 + y1) / 2) * np.sin(angle)
    if fill == "solid":
        weight = np.zeros_like(xs)
    elif fill == "stripes_h":
        weight = ys // width % 2
    elif fill == "stripes_v":
        weight = xs // width % 2
    elif fill == "stripes_diag":
        weight = (xs + ys) // (width * np.sqrt(2)) % 2
    elif fill == "checker":
        weight = (xs // width + ys // width) % 2
    elif fill == "dots":
        weight = ((xs % (2 * width) - width) ** 2 + (ys % (2 * width) - width) ** 2 < (0.7 * width) ** 2)
    elif fill == "split":
        weight = along > 0
    elif fill == "gradient":
        low, high = along[mask].min(), along[mask].max()
        weight = (along - low) / max(high - low, 1e-9)
    else:
        raise ValueError(f"unknown fill {fill!r}; expected one of {FILLS}")
    return np.clip(weight.astype(np.float64), 0.0, 1.0)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight inclusive box (x0, y0, x1, y1) of a non-empty (H, W) mask."""
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


# -- writing ---------------------------------------------------------------------------------------
def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=6, optimize=False)


def _generate(cfg: SynthConfig, out: Path) -> None:
    names = cfg.class_names
    n_test = max(1, round(cfg.per_class * cfg.test_fraction))
    rows: list[CubRow] = []
    part_boxes: list[tuple[int, tuple[int, int, int, int]]] = []
    for label, name in enumerate(names):
        class_dir = f"{label + 1:03d}.{name}"
        for index in range(cfg.per_class):
            rng = np.random.default_rng([cfg.seed, VARIANTS.index(cfg.variant), label, index])
            image, mask, part = draw_example(cfg, label, rng)
            relpath = f"{class_dir}/{name}_{index + 1:04d}.png"
            _save_png(image, out / "images" / relpath)
            _save_png(mask.astype(np.uint8) * 255, out / "segmentations" / relpath)
            rows.append(CubRow(path=relpath, label=label, train=index < cfg.per_class - n_test, box=mask_box(mask)))
            if part is not None:
                part_boxes.append((len(rows), mask_box(part)))
    write_cub_tables(out, rows, class_names=[f"{label + 1:03d}.{name}" for label, name in enumerate(names)])
    if part_boxes:
        write_box_table(out / "part_boxes.txt", part_boxes)
    description = {"generator": "satlib.data.synthetic", "format_version": FORMAT_VERSION, **asdict(cfg)}
    atomic_write_text(out / "synthetic.json", json.dumps(description, indent=2, sort_keys=True) + "\n")


def make_synthetic_dataset(out: str | Path, *, num_classes: int = 6, per_class: int = 200, size: int = 96,
                           seed: int = 0, variant: str = "shapes", **knobs) -> Path:
    """Write the synthetic dataset (CUB layout + segmentations/) to `out`; returns `out`.

    Knobs and defaults: see `SynthConfig`. The set is written to a temporary sibling folder and moved
    into place, so `out` is either complete or untouched. An existing `out` is replaced only when it
    is empty or an earlier synthetic dataset (it holds synthetic.json).
    """
    cfg = SynthConfig(num_classes=num_classes, per_class=per_class, size=size, seed=seed, variant=variant,
                      **knobs).resolved()
    return atomic_dir(out, lambda tmp: _generate(cfg, tmp), replaces="synthetic.json")


def ensure_synthetic_dataset(root: str | Path, **kwargs) -> Path:
    """Generate the synthetic dataset into `root` unless it already holds a CUB-layout dataset."""
    root = Path(root)
    if (root / "images.txt").is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root}: not empty and not a CUB-layout dataset (no images.txt)")
    return make_synthetic_dataset(root, **kwargs)


def read_part_boxes(root: str | Path) -> dict[str, np.ndarray]:
    """part_boxes.txt of a "parts" dataset -> {image id (relative path): (4,) xyxy}."""
    root = Path(root)
    problems = Problems()
    images = read_id_table(root / "images.txt", problems, maxsplit=1)
    parts = read_id_table(root / "part_boxes.txt", problems, width=5)
    out = {}
    for image_id, (_, texts) in parts.items():
        x, y, w, h = (float(t) for t in texts)
        out[images[image_id][1][0]] = np.array([x, y, x + w, y + h])
    return out
