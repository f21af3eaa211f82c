"""Check the md5 of downloaded archives against the known official values (or one given with --md5).

Known: CUB_200_2011.tgz, segmentations.tgz, ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar,
ILSVRC2012_devkit_t12.tar.gz. Exit status 1 when a file is missing or differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from satlib.data.archives import KNOWN_MD5, md5sum


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--md5", help="expected md5 (for a single file not in the known list)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.md5 and len(args.files) != 1:
        print("error: --md5 goes with exactly one file", file=sys.stderr)
        return 2
    failed = False
    for path in args.files:
        if not path.is_file():
            print(f"MISSING   {path}")
            failed = True
            continue
        expected = args.md5 or KNOWN_MD5.get(path.name)
        actual = md5sum(path)
        if expected is None:
            print(f"UNKNOWN   {path} md5 {actual} (no reference value)")
        elif actual == expected:
            print(f"OK        {path}")
        else:
            print(f"MISMATCH  {path} md5 {actual}, expected {expected}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
