"""Prepare ImageNet (ILSVRC 2012) for satlib from the official archives (they need an image-net.org
login, so nothing is downloaded here):

  ILSVRC2012_img_train.tar      -> <out>/train/<wnid>/*.JPEG       (one inner tar per class)
  ILSVRC2012_img_val.tar        -> <out>/val/ILSVRC2012_val_*.JPEG
  ILSVRC2012_bbox_val_v3.tgz    -> <out>/metadata/test/{image_ids,class_labels,image_sizes,localization}.txt
  (or a folder of the val XMLs)    (wsolevaluation format; several rows for several boxes)

Labels are the index of the wnid in sorted order (the usual 0..999), or the order of --wnids.
Then: build_dataset("imagenet", "<out>", "train" | "test").
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from satlib.data.archives import KNOWN_MD5, DownloadError, check_md5, extract_tar
from satlib.data.convert import imagenet_val_metadata
from satlib.data.imagenet import class_folders
from satlib.data.records import DataError
from satlib.files import atomic_dir

HOW_TO_GET = ("ImageNet needs a login: download ILSVRC2012_img_train.tar (md5 {train}), "
              "ILSVRC2012_img_val.tar (md5 {val}) and ILSVRC2012_bbox_val_v3.tgz from "
              "https://image-net.org/download-images.php, then pass them with --train-tar, --val-tar "
              "and --val-xml.").format(train=KNOWN_MD5["ILSVRC2012_img_train.tar"],
                                        val=KNOWN_MD5["ILSVRC2012_img_val.tar"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="the ImageNet root to fill")
    parser.add_argument("--train-tar", type=Path, help="ILSVRC2012_img_train.tar")
    parser.add_argument("--val-tar", type=Path, help="ILSVRC2012_img_val.tar")
    parser.add_argument("--val-xml", type=Path, help="ILSVRC2012_bbox_val_v3.tgz or a folder of val XMLs")
    parser.add_argument("--wnids", type=Path, help="class order: one wnid per line (first word); "
                                                  "default: sorted <out>/train folders")
    parser.add_argument("--verify", action="store_true", help="check the archives' md5 first (slow)")
    return parser


def _need(path: Path | None, what: str) -> Path:
    if path is None or not path.is_file():
        raise DownloadError(f"{what} not found{f' at {path}' if path else ''}. {HOW_TO_GET}")
    return path


def extract_train(train_tar: Path, out: Path) -> int:
    """Unpack the per-class inner tars into out/train/<wnid>/ (a class folder appears complete or not at all)."""
    train = out / "train"
    train.mkdir(parents=True, exist_ok=True)
    done = 0
    with tarfile.open(train_tar) as outer:
        for member in outer:
            if not member.isfile() or not member.name.endswith(".tar"):
                continue
            wnid = Path(member.name).stem
            final = train / wnid
            if final.is_dir():
                continue
            atomic_dir(final, lambda work, member=member: _extract_inner(outer, member, work))
            done += 1
    return done


def _extract_inner(outer: tarfile.TarFile, member: tarfile.TarInfo, work: Path) -> None:
    """The files of one inner (per-class) tar of `outer`, flat in `work`."""
    with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
        for item in inner:
            if item.isfile():
                with inner.extractfile(item) as src, open(work / Path(item.name).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def extract_val(val_tar: Path, out: Path) -> None:
    final = out / "val"
    if final.is_dir():
        print(f"{final} exists; leaving it as it is")
        return
    atomic_dir(final, lambda work: extract_tar(val_tar, work))


def read_wnids(path: Path | None, out: Path) -> list[str]:
    if path is None:
        return class_folders(out / "train")
    wnids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if len(set(wnids)) != len(wnids):
        raise DataError(f"{path}: a wnid is listed twice")
    return wnids


def write_val_metadata(val_xml: Path, wnids: list[str], out: Path) -> int:
    if val_xml.is_dir():
        return imagenet_val_metadata(val_xml, wnids, out / "metadata" / "test")
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        extract_tar(_need(val_xml, "ILSVRC2012_bbox_val_v3.tgz"), tmp)
        return imagenet_val_metadata(tmp, wnids, out / "metadata" / "test")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    try:
        if not (args.train_tar or args.val_tar or args.val_xml):
            raise DownloadError(f"nothing to prepare. {HOW_TO_GET}")
        out.mkdir(parents=True, exist_ok=True)
        if args.train_tar:
            train_tar = _need(args.train_tar, "ILSVRC2012_img_train.tar")
            if args.verify:
                check_md5(train_tar, KNOWN_MD5["ILSVRC2012_img_train.tar"])
            print(f"train: {extract_train(train_tar, out)} class folders unpacked into {out / 'train'}")
        if args.val_tar:
            val_tar = _need(args.val_tar, "ILSVRC2012_img_val.tar")
            if args.verify:
                check_md5(val_tar, KNOWN_MD5["ILSVRC2012_img_val.tar"])
            extract_val(val_tar, out)
        if args.val_xml:
            count = write_val_metadata(args.val_xml, read_wnids(args.wnids, out), out)
            print(f"test metadata: {count} images -> {out / 'metadata' / 'test'}")
    except (DownloadError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
