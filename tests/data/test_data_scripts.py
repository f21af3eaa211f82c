"""data_scripts/ on tiny archives made here; network failures must be fast and say what to do."""

import importlib.util
import io
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from satlib.data import build_dataset
from satlib.data.archives import md5sum

from data_fixtures import coordinate_image, make_cub, write

SCRIPTS = Path(__file__).resolve().parents[2] / "data_scripts"
NAMES = ("fetch_cub", "prepare_imagenet", "fetch_wsoleval_metadata", "convert_cub", "verify_checksums")


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"data_scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_port_url(name: str) -> str:
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def tar_folder(folder: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


@pytest.mark.parametrize("name", NAMES)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script(name).main(["--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter importing torch: several seconds on 2 busy cores
def test_runnable_as_a_file():
    result = subprocess.run([sys.executable, str(SCRIPTS / "verify_checksums.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "md5" in result.stdout


def test_fetch_cub_from_local_archives(tmp_path):
    staging = make_cub(tmp_path / "staging" / "CUB_200_2011")
    images = tar_folder(staging, tmp_path / "CUB_200_2011.tgz", "CUB_200_2011")
    segs = tar_folder(staging / "segmentations", tmp_path / "segmentations.tgz", "segmentations")
    root = tmp_path / "data"
    args = ["--root", str(root), "--archive", str(images), "--segmentations-archive", str(segs),
            "--md5", md5sum(images), "--segmentations-md5", md5sum(segs)]
    assert script("fetch_cub").main(args) == 0
    test = build_dataset("cub", root / "CUB_200_2011", "test", img_size=32, resize_size=40, with_masks=True)
    assert len(test) == 2 and test[0]["mask"].any()


def test_fetch_cub_rejects_a_wrong_checksum(tmp_path, capsys):
    archive = tmp_path / "CUB_200_2011.tgz"
    archive.write_bytes(b"not the archive")
    assert script("fetch_cub").main(["--root", str(tmp_path / "data"), "--archive", str(archive)]) == 2
    assert "expected 97eceeb196236b17998738112f37df78" in capsys.readouterr().err


def test_fetch_cub_without_network_fails_fast_and_says_what_to_do(tmp_path, capsys):
    start = time.perf_counter()
    code = script("fetch_cub").main(["--root", str(tmp_path), "--url", closed_port_url("CUB_200_2011.tgz"),
                                     "--timeout", "3"])
    assert code == 2 and time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert "Download it by hand and put it at" in err and "downloads/CUB_200_2011.tgz" in err
    assert "97eceeb196236b17998738112f37df78" in err
    assert not list((tmp_path / "downloads").glob("*"))  # no partial file left


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def jpeg_bytes(w: int, h: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(coordinate_image(w, h)).save(buffer, format="JPEG")
    return buffer.getvalue()


VAL_XML = """<annotation><folder>val</folder><filename>{name}</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"""
OBJECT = ("<object><name>{wnid}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax>"
          "</bndbox></object>")


def test_prepare_imagenet_from_archives(tmp_path):
    train_tar = tmp_path / "ILSVRC2012_img_train.tar"
    with tarfile.open(train_tar, "w") as outer:
        for wnid, count in (("n02", 2), ("n01", 1)):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for k in range(count):
                    add_bytes(tar, f"{wnid}_{k}.JPEG", jpeg_bytes(20, 16))
            add_bytes(outer, f"{wnid}.tar", inner.getvalue())
    val_tar = tmp_path / "ILSVRC2012_img_val.tar"
    with tarfile.open(val_tar, "w") as tar:
        add_bytes(tar, "ILSVRC2012_val_00000001.JPEG", jpeg_bytes(50, 40))
        add_bytes(tar, "ILSVRC2012_val_00000002.JPEG", jpeg_bytes(60, 30))
    xml = tmp_path / "xml" / "val"
    write(xml / "ILSVRC2012_val_00000001.xml", [VAL_XML.format(
        name="ILSVRC2012_val_00000001", w=50, h=40, objects=OBJECT.format(5, 4, 45, 36, wnid="n02"))])
    write(xml / "ILSVRC2012_val_00000002.xml", [VAL_XML.format(
        name="ILSVRC2012_val_00000002", w=60, h=30,
        objects=OBJECT.format(0, 0, 30, 15, wnid="n01") + OBJECT.format(31, 10, 59, 29, wnid="n01"))])
    xml_tgz = tar_folder(xml, tmp_path / "ILSVRC2012_bbox_val_v3.tgz", "val")

    out = tmp_path / "ILSVRC"
    assert script("prepare_imagenet").main(["--out", str(out), "--train-tar", str(train_tar),
                                            "--val-tar", str(val_tar), "--val-xml", str(xml_tgz)]) == 0
    meta = out / "metadata" / "test"
    assert (meta / "class_labels.txt").read_text().splitlines() == [
        "val/ILSVRC2012_val_00000001.JPEG,1", "val/ILSVRC2012_val_00000002.JPEG,0"]
    assert (meta / "localization.txt").read_text().splitlines()[1:] == [
        "val/ILSVRC2012_val_00000002.JPEG,0,0,30,15", "val/ILSVRC2012_val_00000002.JPEG,31,10,59,29"]
    assert (meta / "image_sizes.txt").read_text().splitlines()[0] == "val/ILSVRC2012_val_00000001.JPEG,50,40"
    train = build_dataset("imagenet", out, "train")
    assert train.class_names == ["n01", "n02"] and train.labels == [0, 1, 1]
    test = build_dataset("imagenet", out, "test", img_size=32, resize_size=40)
    assert test[1]["boxes"].tolist() == [[0.0, 0.0, 16.0, 16.0], [16.0, 9.0, 31.0, 31.0]]


def test_prepare_imagenet_without_archives_says_where_to_get_them(tmp_path, capsys):
    assert script("prepare_imagenet").main(["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "ILSVRC2012_img_train.tar" in err and "image-net.org" in err


def test_bad_val_xml_names_the_file(tmp_path, capsys):
    xml = tmp_path / "xml"
    write(xml / "ILSVRC2012_val_00000001.xml", ["<annotation><filename>x</filename></annotation>"])
    (tmp_path / "ILSVRC" / "train" / "n01").mkdir(parents=True)
    code = script("prepare_imagenet").main(["--out", str(tmp_path / "ILSVRC"), "--val-xml", str(xml)])
    assert code == 2 and "ILSVRC2012_val_00000001.xml: missing <size>" in capsys.readouterr().err


def fake_wsoleval_checkout(root: Path) -> Path:
    meta = root / "metadata" / "OpenImages" / "test"
    write(meta / "image_ids.txt", ["test/c1/a.jpg"])
    write(meta / "class_labels.txt", ["test/c1/a.jpg,0"])
    write(meta / "localization.txt", ["test/c1/a.jpg,test/c1/a_m1.png,test/c1/a_ignore.png"])
    write(root / "metadata" / "OpenImages" / "train" / "image_ids.txt", ["train/c1/z.jpg"])
    return root


def test_fetch_wsoleval_metadata_from_a_checkout_and_an_archive(tmp_path):
    checkout = fake_wsoleval_checkout(tmp_path / "wsolevaluation-abc")
    fetch = script("fetch_wsoleval_metadata")
    root = tmp_path / "OpenImages"
    assert fetch.main(["--dataset", "OpenImages", "--root", str(root), "--source", str(checkout)]) == 0
    assert (root / "metadata" / "test" / "localization.txt").read_text().startswith("test/c1/a.jpg,")
    archive = tar_folder(checkout, tmp_path / "wsol.tar.gz", "wsolevaluation-abc")
    other = tmp_path / "Other"
    assert fetch.main(["--dataset", "OpenImages", "--root", str(other), "--source", str(archive)]) == 0
    assert (other / "metadata" / "train" / "image_ids.txt").read_text() == "train/c1/z.jpg\n"


def test_fetch_wsoleval_metadata_without_network(tmp_path, capsys):
    start = time.perf_counter()
    code = script("fetch_wsoleval_metadata").main(
        ["--dataset", "CUB", "--root", str(tmp_path), "--url", closed_port_url("x.tar.gz"), "--timeout", "3"])
    assert code == 2 and time.perf_counter() - start < 10
    assert "put it at" in capsys.readouterr().err


def test_convert_cub_both_ways(tmp_path):
    cub = make_cub(tmp_path / "CUB")
    convert = script("convert_cub")
    assert convert.main(["to-metadata", "--root", str(cub)]) == 0
    assert (cub / "metadata" / "train" / "class_labels.txt").read_text().splitlines() == [
        "001.Red/red_1.png,0", "002.Blue/blue_1.png,1"]
    again = tmp_path / "again"
    assert convert.main(["to-official", "--metadata", str(cub / "metadata"), "--root", str(again),
                         "--images", str(cub / "images")]) == 0
    a = build_dataset("cub", cub, "test", img_size=32, resize_size=40)
    b = build_dataset("cub", again, "test", img_size=32, resize_size=40)
    assert [x["boxes"].tolist() for x in a] == [x["boxes"].tolist() for x in b]


def test_verify_checksums(tmp_path, capsys):
    verify = script("verify_checksums")
    fake = tmp_path / "CUB_200_2011.tgz"
    fake.write_bytes(b"abc")
    assert verify.main([str(fake)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert verify.main([str(fake), "--md5", "900150983cd24fb0d6963f7d28e17f72"]) == 0  # md5("abc")
    assert verify.main([str(tmp_path / "missing.tar")]) == 1
    other = tmp_path / "other.bin"
    other.write_bytes(b"abc")
    assert verify.main([str(other)]) == 0 and "no reference value" in capsys.readouterr().out
