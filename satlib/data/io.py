"""Image file reading and decoding with torchvision.io (JPEGs batched on the GPU when asked)."""

from __future__ import annotations

import io as _io
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

from satlib.data.records import DataError

JPEG_MAGIC = b"\xff\xd8\xff"

_CODEC_NOTICE = "The image decoding and encoding capabilities of TorchVision"


@contextmanager
def _quiet():
    """torchvision 0.29 deprecates its codecs in favour of TorchCodec; we use them (nvJPEG batching goes
    through them), so that one notice is silenced around our calls."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CODEC_NOTICE, category=DeprecationWarning)
        yield


def read_bytes(path: Path, where: str = "") -> torch.Tensor:
    """The encoded file as a 1-D uint8 tensor; a missing file is a DataError naming it."""
    if not Path(path).is_file():
        raise DataError(f"{path}: image file missing" + (f" (listed at {where})" if where else ""))
    with _quiet():
        return read_file(str(path))


def is_jpeg(data: torch.Tensor) -> bool:
    """Whether encoded bytes start with the JPEG SOI marker."""
    return data.numel() >= 3 and bytes(data[:3].tolist()) == JPEG_MAGIC


def decode_rgb(data: torch.Tensor, path: Path | str = "", where: str = "") -> torch.Tensor:
    """Encoded bytes -> (3, H, W) uint8 RGB; torchvision first, PIL as a fallback, else a DataError."""
    try:
        with _quiet():
            return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError:
        pass
    try:  # rare formats torchvision does not decode (some CMYK JPEGs, GIF frames, ...)
        with Image.open(_io.BytesIO(data.numpy().tobytes())) as image:
            array = np.asarray(image.convert("RGB"))
        return rearrange(torch.from_numpy(array.copy()), "rows cols channels -> channels rows cols").contiguous()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: cannot decode image" + (f" (listed at {where})" if where else "")
                        + f": {err}") from None


def decode_mask(path: Path, where: str = "") -> torch.Tensor:
    """A mask PNG -> (H, W) uint8 (first channel if it has several)."""
    data = read_bytes(path, where)
    try:
        with _quiet():
            mask = decode_image(data, mode=ImageReadMode.GRAY)
    except RuntimeError as err:
        raise DataError(f"{path}: cannot decode mask" + (f" (listed at {where})" if where else "")
                        + f": {err}") from None
    return mask[0]


def decode_jpegs(datas: list[torch.Tensor], device: torch.device | str = "cuda") -> list[torch.Tensor]:
    """Encoded images -> list of (3, H, W) uint8 on `device`; JPEGs in one batched call (nvJPEG on CUDA).

    Anything that is not a JPEG (PNG, ...) is decoded on the CPU and moved.
    """
    device = torch.device(device)
    jpeg_at = [i for i, data in enumerate(datas) if is_jpeg(data)]
    images: list[torch.Tensor | None] = [None] * len(datas)
    if jpeg_at:
        with _quiet():
            decoded = decode_jpeg([datas[i] for i in jpeg_at], mode=ImageReadMode.RGB, device=device)
        for i, image in zip(jpeg_at, decoded):
            images[i] = image
    for i, data in enumerate(datas):
        if images[i] is None:
            images[i] = decode_rgb(data).to(device)
    return images


def image_size(path: Path) -> tuple[int, int]:
    """(w, h) from the file header only (PIL reads lazily); DataError if missing or unreadable."""
    if not Path(path).is_file():
        raise DataError(f"{path}: image file missing")
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot read image header: {err}") from None
