"""Install wsolevaluation's metadata (clovaai/wsolevaluation, metadata/<dataset>/<split>/*.txt) into a
dataset root as <root>/metadata/<split>/, where `satlib.data.build_dataset` looks for it.

The source is a wsolevaluation checkout (--source DIR), its GitHub archive (--source FILE.tar.gz), or
the archive of the pinned commit, downloaded (fails fast without network, saying what to fetch).

Images are not included; after the metadata, the root must hold them at <root>/<image id>:
  CUB         CUB_200_2011/images (our official-layout loader also reads <root>/images/<image id>);
              CUBV2 (split "val") from the wsolevaluation README
  ILSVRC      <root>/val/ILSVRC2012_val_*.JPEG (test), <root>/val2/... ImageNetV2 (val), <root>/train/...
  OpenImages  the OpenImages30k images and masks (wsolevaluation dataset/prepare_openimages.sh),
              unzipped into <root> so that <root>/test/<class>/<id>.jpg and its masks exist
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from satlib.data.archives import WSOLEVAL_URL, DownloadError, download, extract_tar
from satlib.data.metadata import METADATA_FILES
from satlib.data.records import DataError
from satlib.files import atomic_write

DATASETS = ("CUB", "ILSVRC", "OpenImages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--root", required=True, type=Path, help="dataset root; metadata goes to <root>/metadata")
    parser.add_argument("--source", type=Path, help="a wsolevaluation checkout or its .tar.gz archive")
    parser.add_argument("--url", default=WSOLEVAL_URL)
    parser.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds")
    return parser


def find_metadata(tree: Path, dataset: str) -> Path:
    """The metadata/<dataset> folder of an unpacked checkout or archive (top folder optional)."""
    for candidate in [tree / "metadata" / dataset, *tree.glob(f"*/metadata/{dataset}")]:
        if candidate.is_dir():
            return candidate
    raise DataError(f"{tree}: no metadata/{dataset}/ inside (is it a wsolevaluation checkout?)")


def install(source: Path, root: Path) -> dict[str, int]:
    """Copy source/<split>/*.txt into root/metadata/<split>/; returns image ids per split."""
    counts = {}
    for split_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        dest = root / "metadata" / split_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in METADATA_FILES:  # wsolevaluation's own files, copied byte for byte
            if (split_dir / name).is_file():
                atomic_write(dest / name, lambda f, src=split_dir / name: f.write(src.read_bytes()))
        ids = dest / "image_ids.txt"
        counts[split_dir.name] = sum(1 for line in ids.open() if line.strip()) if ids.is_file() else 0
    return counts


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = args.source
            if source is None:
                source = download(args.url, args.root / "downloads" / Path(args.url).name, None, args.timeout)
            if source.is_file():
                extract_tar(source, tmp)
                source = Path(tmp)
            elif not source.is_dir():
                raise DownloadError(f"{source}: no such file or folder")
            counts = install(find_metadata(source, args.dataset), args.root)
    except (DownloadError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{split} {n}" for split, n in counts.items())
    print(f"{args.dataset} metadata in {args.root / 'metadata'}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
