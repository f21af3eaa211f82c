"""Convert CUB between its official layout and wsolevaluation metadata.

  to-metadata   <root> (official layout)  ->  <out>/{train,test}/{image_ids,class_labels,image_sizes,
                localization}.txt  (default <root>/metadata); image sizes from the image headers
  to-official   <metadata>/{train,test}   ->  <root>/{images.txt, image_class_labels.txt,
                train_test_split.txt, bounding_boxes.txt, classes.txt}; images stay where they are,
                expected at <root>/images/<image id> (--images DIR links <root>/images to DIR)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from satlib.data.convert import cub_to_metadata, metadata_to_cub
from satlib.data.records import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    to_meta = commands.add_parser("to-metadata", help="official layout -> wsolevaluation metadata")
    to_meta.add_argument("--root", required=True, type=Path, help="official CUB_200_2011 folder")
    to_meta.add_argument("--out", type=Path, help="metadata folder (default <root>/metadata)")
    to_official = commands.add_parser("to-official", help="wsolevaluation metadata -> official layout")
    to_official.add_argument("--metadata", required=True, type=Path, help="folder with train/ and test/")
    to_official.add_argument("--root", required=True, type=Path, help="folder for the official tables")
    to_official.add_argument("--images", type=Path, help="image folder to link as <root>/images")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "to-metadata":
            out = args.out or args.root / "metadata"
            counts = cub_to_metadata(args.root, out)
        else:
            out = args.root
            if args.images is not None:
                link = args.root / "images"
                if link.exists() or link.is_symlink():
                    raise DataError(f"{link} exists; remove it or drop --images")
                args.root.mkdir(parents=True, exist_ok=True)
                link.symlink_to(args.images.resolve(), target_is_directory=True)
            counts = metadata_to_cub(args.metadata, args.root)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
