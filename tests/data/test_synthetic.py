from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from satlib.data import build_dataset
from satlib.data.synthetic import SHAPES, ensure_synthetic_dataset, make_synthetic_dataset, read_part_boxes


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "shapes", per_class=50)


def read(root: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(root / rel))


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    kwargs = dict(num_classes=3, per_class=5, size=48)
    a = files(make_synthetic_dataset(tmp_path / "a", seed=7, **kwargs))
    b = files(make_synthetic_dataset(tmp_path / "b", seed=7, **kwargs))
    c = files(make_synthetic_dataset(tmp_path / "c", seed=8, **kwargs))
    assert a == b
    assert len(a) == 3 * 5 * 2 + 6  # images, masks, five tables and synthetic.json
    images = [k for k in a if k.startswith("images/")]
    assert all(a[k] != c[k] for k in images)


def test_parts_variant_is_deterministic_and_writes_part_boxes(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", num_classes=4, per_class=4, size=64, variant="parts")
    b = make_synthetic_dataset(tmp_path / "b", num_classes=4, per_class=4, size=64, variant="parts")
    assert files(a) == files(b)
    parts = read_part_boxes(a)
    test = build_dataset("cub", a, "test")
    assert len(parts) == 16 and test.class_names[0] == "001.beak_triangle"
    for record in test.records:
        x0, y0, x1, y1 = record.boxes[0]
        px0, py0, px1, py1 = parts[record.image_id]
        assert x0 <= px0 and y0 <= py0 and px1 <= x1 and py1 <= y1  # the part lies inside the object
        assert (px1 - px0 + 1) * (py1 - py0 + 1) < 0.4 * (x1 - x0 + 1) * (y1 - y0 + 1)


def test_layout_splits_and_boxes_match_masks(shapes_root):
    train = build_dataset("synthetic", shapes_root, "train")
    test = build_dataset("synthetic", shapes_root, "test")
    assert (len(train), len(test)) == (6 * 40, 6 * 10)
    assert train.img_size == train.resize_size == 96  # the native side, so the crop is a no-op
    assert build_dataset("cub", shapes_root, "test").img_size == 96  # whatever the name
    assert train.class_names == [f"{i + 1:03d}.{name}" for i, name in enumerate(SHAPES[:6])]
    sides = []
    for record in test.records:
        mask = read(shapes_root, f"segmentations/{record.image_id}") > 127
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert record.boxes[0].tolist() == [cols[0], rows[0], cols[-1], rows[-1]]
        sides.append(max(cols[-1] - cols[0], rows[-1] - rows[0]) + 1)
    sides = np.array(sides) / 96
    assert sides.min() > 0.1 and sides.max() < 0.8 and sides.std() > 0.08  # varied sizes


def test_test_items_carry_exact_boxes_and_masks(shapes_root):
    item = build_dataset("synthetic", shapes_root, "test", with_masks=True)[0]
    rows, cols = np.flatnonzero(item["mask"].any(1)), np.flatnonzero(item["mask"].any(0))
    assert item["boxes"].tolist() == [[cols[0], rows[0], cols[-1], rows[-1]]]


def test_object_colour_does_not_tell_the_class(shapes_root):
    means = []
    for record in build_dataset("synthetic", shapes_root, "train").records:
        mask = read(shapes_root, f"segmentations/{record.image_id}") > 127
        means.append((record.label, read(shapes_root, f"images/{record.image_id}")[mask].mean(0)))
    per_class = np.array([np.mean([m for label, m in means if label == c], 0) for c in range(6)])
    assert np.ptp(per_class, axis=0).max() < 40  # uniform colours: classes differ only by chance


def test_refuses_to_overwrite_other_folders_but_regenerates_its_own(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no synthetic dataset"):
        make_synthetic_dataset(other, num_classes=2, per_class=2, size=32)
    assert (other / "notes.txt").read_text() == "keep me"
    mine = make_synthetic_dataset(tmp_path / "mine", num_classes=2, per_class=2, size=32, seed=1)
    make_synthetic_dataset(mine, num_classes=3, per_class=2, size=32, seed=1)
    assert len((mine / "classes.txt").read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "other"]  # no temporary left behind


def test_ensure_generates_only_when_empty(tmp_path):
    root = ensure_synthetic_dataset(tmp_path / "s", num_classes=2, per_class=3, size=32)
    before = files(root)
    ensure_synthetic_dataset(root, num_classes=5)  # already there: left alone
    assert files(root) == before


def test_knobs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="num_classes must be 1..10"):
        make_synthetic_dataset(tmp_path / "x", num_classes=11)
    with pytest.raises(ValueError, match="unknown variant"):
        make_synthetic_dataset(tmp_path / "x", variant="colours")
    with pytest.raises(TypeError):
        make_synthetic_dataset(tmp_path / "x", not_a_knob=1)


def test_fills_variant_classes_are_silhouette_times_fill_and_deterministic(tmp_path):
    from satlib.data.synthetic import FILL_SHAPES, FILLS

    a = make_synthetic_dataset(tmp_path / "a", num_classes=16, per_class=2, size=48, variant="fills")
    b = make_synthetic_dataset(tmp_path / "b", num_classes=16, per_class=2, size=48, variant="fills")
    assert files(a) == files(b)
    test = build_dataset("cub", a, "test")
    assert test.class_names[:2] == [f"001.{FILL_SHAPES[0]}_{FILLS[0]}", f"002.{FILL_SHAPES[0]}_{FILLS[1]}"]
    assert test.class_names[8] == f"009.{FILL_SHAPES[1]}_{FILLS[0]}"
    with pytest.raises(ValueError, match="num_classes must be 1..64"):
        make_synthetic_dataset(tmp_path / "c", num_classes=65, per_class=2, variant="fills")


def test_fill_patterns_mix_two_colours_inside_the_object():
    from satlib.data.synthetic import FILLS, fill_pattern

    mask = np.zeros((64, 64), bool)
    mask[8:56, 16:48] = True  # a 32 x 48 object: stripes 6 px wide
    rng = np.random.default_rng(0)
    shares = {fill: fill_pattern(fill, mask, rng)[mask].mean() for fill in FILLS}
    assert shares["solid"] == 0.0
    for fill in ("stripes_h", "stripes_v", "stripes_diag", "checker", "split", "gradient"):
        assert 0.3 < shares[fill] < 0.7, fill  # about half of each colour
    assert 0.05 < shares["dots"] < 0.5
    horizontal = fill_pattern("stripes_h", mask, rng)
    assert (horizontal[:, 0] == horizontal[:, 40]).all() and not (horizontal[0] == horizontal[3]).all()
    with pytest.raises(ValueError, match="unknown fill"):
        fill_pattern("plaid", mask, rng)


def test_fills_silhouettes_are_far_from_the_demo_shapes():
    """No pretraining silhouette overlaps one of the demo's six classes (IoU < 0.65 at any rotation, mirrored or
    not, both scaled to the same longest side): a backbone pretrained on "fills" has not seen the demo's classes."""
    from satlib.data.synthetic import FILL_SHAPES, _raster, shape_polygons

    def mask(name: str, degrees: float, mirror: float) -> np.ndarray:
        theta = np.deg2rad(degrees)
        linear = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([mirror, 1])
        return _raster([(v @ linear.T * 30 + 48, fill) for v, fill in shape_polygons(name)], 96)

    for name in FILL_SHAPES:
        for demo in SHAPES[:6]:
            target = mask(demo, 0, 1)
            for degrees in range(0, 360, 15):
                for mirror in (1.0, -1.0):
                    candidate = mask(name, degrees, mirror)
                    iou = (candidate & target).sum() / (candidate | target).sum()
                    assert iou < 0.65, (name, demo, degrees, mirror, iou)
