"""Downloads that fail fast, checksums and safe archive extraction (used by data_scripts/)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

# Official archives and their md5 (CUB: CaltechDATA; ImageNet: as torchvision.datasets.ImageNet checks).
CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CUB_MD5 = "97eceeb196236b17998738112f37df78"
CUB_SEGMENTATIONS_URL = "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz"
CUB_SEGMENTATIONS_MD5 = "4d47ba1228eae64f2fa547c47bc65255"
WSOLEVAL_COMMIT = "96f4b88679af41f005824661f47e6fe3628af2aa"
WSOLEVAL_URL = f"https://github.com/clovaai/wsolevaluation/archive/{WSOLEVAL_COMMIT}.tar.gz"
KNOWN_MD5 = {
    "CUB_200_2011.tgz": CUB_MD5,
    "segmentations.tgz": CUB_SEGMENTATIONS_MD5,
    "ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
    "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
    "ILSVRC2012_devkit_t12.tar.gz": "fa75699e90414af021442c21a62c3abf",
}


class DownloadError(RuntimeError):
    """A download or checksum failed; the message says what to fetch by hand and where to put it."""


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path: str | Path, md5: str | None) -> None:
    """DownloadError when `path`'s md5 differs from `md5` (None: nothing to check)."""
    if md5 is None:
        return
    actual = md5sum(path)
    if actual != md5:
        raise DownloadError(f"{path}: md5 {actual}, expected {md5} (incomplete or wrong file; delete it "
                            f"and download again)")


def download(url: str, dest: str | Path, md5: str | None = None, timeout: float = 10.0) -> Path:
    """Fetch `url` to `dest` (kept if already there with the right md5); fails fast without network.

    The file is written as `dest`.part and renamed when complete and verified.
    """
    dest = Path(dest)
    if dest.is_file():
        check_md5(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {getattr(err, 'reason', err)}\n"
                            f"Download it by hand and put it at {dest}"
                            + (f" (md5 {md5})" if md5 else "") + ", then run this script again.") from None
    try:
        check_md5(part, md5)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _inside(root: Path, member: str) -> bool:
    target = (root / member).resolve()
    return target == root or root in target.parents


def extract_tar(archive: str | Path, dest: str | Path) -> Path:
    """Extract a (gzipped) tar into `dest`, refusing members that would land outside it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            if not _inside(root, member.name) or member.issym() or member.islnk():
                raise DownloadError(f"{archive}: refusing unsafe member {member.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # Python without extraction filters: members were checked above
            tar.extractall(dest, members=members)
    return dest

