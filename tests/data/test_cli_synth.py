from satlib.cli import main
from satlib.data import build_dataset


def test_cli_synth_writes_a_dataset_build_dataset_reads(tmp_path):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--num-classes", "2", "--per-class", "5",
                 "--size", "32", "--seed", "3"]) == 0
    train = build_dataset("cub", out, "train", img_size=32, resize_size=32)
    test = build_dataset("cub", out, "test", img_size=32, resize_size=32)
    assert (len(train), len(test)) == (8, 2)
    assert train[0]["image"].shape == (3, 32, 32) and test[1]["label"] == 1
