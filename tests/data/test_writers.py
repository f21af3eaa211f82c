"""The one writer of each format, read back by its reader: CUB tables and wsolevaluation metadata."""

import numpy as np
import pytest

from satlib.data.cub import CUB_FILES, CubRow, read_classes, read_cub, write_box_table, write_cub_tables
from satlib.data.metadata import METADATA_FILES, read_metadata, write_metadata
from satlib.data.records import DataError, Problems
from satlib.data.synthetic import read_part_boxes

from data_fixtures import CUB_IMAGES, make_cub

ROWS = [CubRow(path="001.a/x 1.jpg", label=0, train=True, box=(4.0, 3.5, 24.0, 18.25)),
        CubRow(path="002.b/y.jpg", label=1, train=False, box=(0, 0, 63, 31)),
        CubRow(path="002.b/z.jpg", label=1, train=True, box=(10.0, 12.0, 10.0, 12.0))]


def test_cub_tables_read_back_as_written(tmp_path):
    root = write_cub_tables(tmp_path / "cub", ROWS, class_names=["001.a", "002.b"])
    assert read_classes(root / "classes.txt", Problems()) == ["001.a", "002.b"]
    train, _ = read_cub(root, "train", Problems())
    test, _ = read_cub(root, "test", Problems())
    assert [(r.image_id, r.label) for r in train] == [("001.a/x 1.jpg", 0), ("002.b/z.jpg", 1)]
    assert [(r.image_id, r.label) for r in test] == [("002.b/y.jpg", 1)]
    assert train[0].path == root / "images" / "001.a/x 1.jpg"
    # x y w h with one decimal, as CUB: height 18.25 - 3.5 = 14.75 is written "14.8"
    assert (root / "bounding_boxes.txt").read_text().splitlines()[0] == "1 4.0 3.5 20.0 14.8"
    assert train[0].boxes.tolist() == [[4.0, 3.5, 24.0, 3.5 + 14.8]]
    assert train[1].boxes.tolist() == [[10.0, 12.0, 10.0, 12.0]] and test[0].boxes.tolist() == [[0, 0, 63, 31]]


def test_cub_tables_are_byte_for_byte_the_official_layout(tmp_path):
    # the test fixture writes CUB's tables by hand, as CUB_200_2011 holds them
    by_hand = make_cub(tmp_path / "by_hand")
    rows = [CubRow(path=rel, label=cls - 1, train=bool(train), box=(x, y, x + w, y + h))
            for rel, _, _, cls, train, (x, y, w, h) in CUB_IMAGES]
    written = write_cub_tables(tmp_path / "written", rows, class_names=["001.Red", "002.Blue"])
    for name in CUB_FILES:
        assert (written / name).read_bytes() == (by_hand / name).read_bytes(), name


@pytest.mark.parametrize("row, classes, message", [
    (CubRow("001.a/x.jpg", 2, True, (0, 0, 1, 1)), ["a", "b"],
     r"images\.txt: image id 2 \(001\.a/x\.jpg\): class index 2 outside the 2 classes"),
    (CubRow("001.a/x.jpg", -1, True, (0, 0, 1, 1)), ["a", "b"], r"class index -1 outside"),
    (CubRow("001.a/x.jpg", 0, True, (5, 0, 1, 1)), ["a"],
     r"bounding_boxes\.txt: image id 2 \(001\.a/x\.jpg\): box .* not a valid box"),
    (CubRow("001.a/x\n.jpg", 0, True, (0, 0, 1, 1)), ["a"],
     r"images\.txt: image id 2: image path .* cannot be written"),
    (CubRow(" x.jpg", 0, True, (0, 0, 1, 1)), ["a"], r"image path ' x\.jpg' cannot be written"),
    (CubRow("x.jpg", 0, True, (0, 0, 1, 1)), ["a", ""], r"classes\.txt: class id 2: class name '' cannot be written"),
])
def test_cub_writer_refuses_what_the_reader_would_refuse_and_writes_nothing(tmp_path, row, classes, message):
    good = CubRow("001.a/ok.jpg", 0, True, (0, 0, 1, 1))
    with pytest.raises(DataError, match=message):
        write_cub_tables(tmp_path / "cub", [good, row], class_names=classes)
    assert not (tmp_path / "cub").exists()


def test_box_table_reads_back_as_part_boxes(tmp_path):
    root = write_cub_tables(tmp_path / "cub", ROWS, class_names=["001.a", "002.b"])
    write_box_table(root / "part_boxes.txt", [(1, (5, 4, 9, 8)), (3, (10, 12, 11, 14))])
    parts = read_part_boxes(root)
    assert {k: v.tolist() for k, v in parts.items()} == {"001.a/x 1.jpg": [5.0, 4.0, 9.0, 8.0],
                                                        "002.b/z.jpg": [10.0, 12.0, 11.0, 14.0]}
    with pytest.raises(DataError, match=r"part_boxes\.txt: image id 7: box .* not a valid box"):
        write_box_table(root / "part_boxes.txt", [(7, (0, 9, 4, 3))])
    assert len(read_part_boxes(root)) == 2  # the old file stays whole


META_ROWS = [
    {"image_id": "val/a.JPEG", "label": 2, "size": (50, 40), "boxes": [(5, 4, 45, 36.9)]},
    {"image_id": "val/b c.JPEG", "label": 0, "size": (60, 30), "boxes": [(0, 0, 30, 15), (31, 10, 59, 29)]},
    {"image_id": "test/c1/m.jpg", "label": 1, "masks": ["test/c1/m_1.png", "test/c1/m_2.png"],
     "ignore": "test/c1/m_ignore.png"},
]


def test_metadata_reads_back_as_written(tmp_path):
    meta = write_metadata(tmp_path / "meta" / "test", META_ROWS)
    assert sorted(p.name for p in meta.iterdir()) == sorted(METADATA_FILES)
    records = read_metadata(meta, tmp_path / "images", 3, Problems(), mask_root=tmp_path / "masks")
    assert [(r.image_id, r.label, r.size) for r in records] == [
        ("val/a.JPEG", 2, (50, 40)), ("val/b c.JPEG", 0, (60, 30)), ("test/c1/m.jpg", 1, None)]
    assert records[0].boxes.tolist() == [[5.0, 4.0, 45.0, 36.0]]  # truncated like int(), as wsoleval's files
    assert np.array_equal(records[1].boxes, np.array([[0, 0, 30, 15], [31, 10, 59, 29]], dtype=np.float64))
    assert records[2].mask_paths == [tmp_path / "masks" / "test/c1/m_1.png", tmp_path / "masks" / "test/c1/m_2.png"]
    assert records[2].ignore_path == tmp_path / "masks" / "test/c1/m_ignore.png"
    assert records[1].path == tmp_path / "images" / "val/b c.JPEG"


@pytest.mark.parametrize("row, message", [
    ({"image_id": "val/x,y.JPEG", "label": 0},
     r"image_ids\.txt: row 2: image id 'val/x,y\.JPEG' cannot be written"),
    ({"image_id": "val/x.JPEG"}, r"row 2 has no label"),
    ({"image_id": "val/x.JPEG", "label": -1}, r"class_labels\.txt: row 2 \(val/x\.JPEG\): class label -1"),
    ({"image_id": "val/x.JPEG", "label": 0, "size": (0, 5)}, r"image_sizes\.txt: row 2 .* must be positive"),
    ({"image_id": "val/x.JPEG", "label": 0, "boxes": [(9, 0, 4, 4)]}, r"localization\.txt: row 2 .* not a valid box"),
    ({"image_id": "val/x.JPEG", "label": 0, "masks": ["m,1.png"]}, r"localization\.txt: row 2 .* mask path"),
])
def test_metadata_writer_refuses_bad_rows_and_writes_nothing(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        write_metadata(tmp_path / "meta", [META_ROWS[0], row])
    assert not (tmp_path / "meta").exists()
