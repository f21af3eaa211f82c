"""Image file reading and decoding with torchvision.io (JPEGs batched on the GPU when asked)."""

from __future__ import annotations

import io as _io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class JpegHeader:
    """What a JPEG's frame header says: size, colour components and coding."""

    width: int
    height: int
    components: int  # 1 grey, 3 YCbCr, 4 CMYK/YCCK
    baseline: bool  # sequential Huffman (SOF0/SOF1); progressive and arithmetic coding are not

    @property
    def device_decodable(self) -> bool:
        """Whether the batched nvJPEG call takes it: baseline, grey or colour (not CMYK, not progressive)."""
        return self.baseline and self.components in (1, 3)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # start-of-frame markers


def jpeg_header(data: torch.Tensor) -> JpegHeader | None:
    """The frame header of encoded JPEG bytes (1-D uint8), read by walking the marker segments; None when the
    bytes are not a JPEG or end before a frame header."""
    raw = data.numpy().tobytes() if isinstance(data, torch.Tensor) else bytes(data)
    if not raw.startswith(JPEG_MAGIC):
        return None
    at = 2
    while at + 4 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(raw[at + 2:at + 4], "big")
        if marker in _SOF:
            if at + 10 > len(raw):
                return None
            height, width = int.from_bytes(raw[at + 5:at + 7], "big"), int.from_bytes(raw[at + 7:at + 9], "big")
            return JpegHeader(width, height, raw[at + 9], marker in (0xC0, 0xC1))
        at += 2 + length
    return None


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
