"""Fetch CUB-200-2011 (+ its segmentations) from CaltechDATA, verify the md5s and unpack them.

Result: <root>/CUB_200_2011/{images/, images.txt, ..., segmentations/}, the layout
`satlib.data.build_dataset("cub", "<root>/CUB_200_2011", split)` reads. Without network it stops
within --timeout seconds and says which file to download by hand and where to put it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from satlib.data.archives import (
    CUB_MD5,
    CUB_SEGMENTATIONS_MD5,
    CUB_SEGMENTATIONS_URL,
    CUB_URL,
    DownloadError,
    check_md5,
    download,
    extract_tar,
)
from satlib.data.cub import read_cub
from satlib.data.records import DataError, Problems
from satlib.files import atomic_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="folder to hold CUB_200_2011/ and downloads/")
    parser.add_argument("--archive", type=Path, help="an already downloaded CUB_200_2011.tgz")
    parser.add_argument("--segmentations-archive", type=Path, help="an already downloaded segmentations.tgz")
    parser.add_argument("--no-segmentations", action="store_true", help="skip the segmentation masks")
    parser.add_argument("--url", default=CUB_URL)
    parser.add_argument("--segmentations-url", default=CUB_SEGMENTATIONS_URL)
    parser.add_argument("--md5", default=CUB_MD5, help="expected md5 of the image archive")
    parser.add_argument("--segmentations-md5", default=CUB_SEGMENTATIONS_MD5)
    parser.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds")
    return parser


def obtain(archive: Path | None, url: str, dest: Path, md5: str, timeout: float) -> Path:
    """A verified local archive: the given one, or a download to `dest`."""
    if archive is not None:
        if not archive.is_file():
            raise DownloadError(f"{archive}: no such file")
        check_md5(archive, md5)
        return archive
    return download(url, dest, md5, timeout)


def unpack(archive: Path, member: str, dest: Path) -> None:
    """Extract `archive` and move its top folder `member` to `dest` in one step."""
    if dest.exists():
        print(f"{dest} exists; leaving it as it is")
        return

    def fill(work: Path) -> Path:
        extract_tar(archive, work)
        if not (work / member).is_dir():
            raise DownloadError(f"{archive}: no {member}/ folder inside")
        return work / member

    atomic_dir(dest, fill)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root: Path = args.root
    cub = root / "CUB_200_2011"
    try:
        archive = obtain(args.archive, args.url, root / "downloads" / "CUB_200_2011.tgz", args.md5, args.timeout)
        unpack(archive, "CUB_200_2011", cub)
        if not args.no_segmentations:
            seg = obtain(args.segmentations_archive, args.segmentations_url,
                         root / "downloads" / "segmentations.tgz", args.segmentations_md5, args.timeout)
            unpack(seg, "segmentations", cub / "segmentations")
        counts = {split: len(read_cub(cub, split, Problems())[0]) for split in ("train", "test")}
    except (DownloadError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"CUB-200-2011 ready at {cub}: {counts['train']} train, {counts['test']} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
