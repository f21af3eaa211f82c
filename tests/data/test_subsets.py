import pytest

from satlib.data import build_dataset, few_shot_indices

from data_fixtures import make_imagenet

LABELS = [0] * 10 + [1] * 3 + [2] * 7 + [0] * 5  # class 0 has 15, class 1 has 3, class 2 has 7


def test_sizes_are_n_per_class_or_the_whole_class():
    for n, size in ((1, 3), (3, 9), (5, 13), (20, 25)):
        chosen = few_shot_indices(LABELS, n, seed=0)
        assert len(chosen) == size
        assert chosen == sorted(set(chosen))
        counts = [sum(LABELS[i] == c for i in chosen) for c in range(3)]
        assert counts == [min(n, 15), min(n, 3), min(n, 7)]


def test_deterministic_and_seed_dependent():
    assert few_shot_indices(LABELS, 4, seed=3) == few_shot_indices(LABELS, 4, seed=3)
    draws = {tuple(few_shot_indices(LABELS, 4, seed=s)) for s in range(6)}
    assert len(draws) > 1


def test_a_class_draw_does_not_depend_on_other_classes():
    full = few_shot_indices(LABELS, 2, seed=1)
    without_class_1 = [i for i, label in enumerate(LABELS) if label != 1]
    sub = few_shot_indices([LABELS[i] for i in without_class_1], 2, seed=1)
    assert [without_class_1[i] for i in sub] == [i for i in full if LABELS[i] != 1]


def test_bad_per_class():
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        few_shot_indices(LABELS, 0)


def test_build_dataset_one_image_per_class(tmp_path):
    root = make_imagenet(tmp_path / "ILSVRC")
    one = build_dataset("imagenet", root, "train", per_class=1, seed=0)
    assert sorted(one.labels) == [0, 1, 2]
    two = build_dataset("imagenet", root, "train", per_class=2, seed=5)
    assert sorted(two.labels) == [0, 0, 1, 2, 2]
    again = build_dataset("imagenet", root, "train", per_class=2, seed=5)
    assert [r.image_id for r in two.records] == [r.image_id for r in again.records]
