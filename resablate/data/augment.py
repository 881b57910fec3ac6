"""The CIFAR-10 augmentation of R1 section 4.2, on a whole batch on its device.

"4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip."
The batch arrives mean-subtracted (the per-pixel mean of R1 4.2, see `base.py`), so the zero padding is zero in the
normalized space, as torchvision's `RandomCrop(32, padding=4)` applied to a mean-subtracted image would pad it.

The draw is separate from the crop: `draw_pad_crop_flip` takes a `torch.Generator` (on the CPU, so the same seed gives
the same crops on any device), and `pad_crop_flip` is a pure function of the batch and the drawn offsets and flips. One
advanced-indexing gather does the whole batch; no Python loop over images. On a GPU the draws travel in one
non-blocking copy from pinned memory, so augmenting a batch never makes the host wait for the GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pad_crop_flip(x: Tensor, offsets_y: Tensor, offsets_x: Tensor, flips: Tensor, pad: int = 4) -> Tensor:
    """Image n of `x` zero-padded by `pad` on each side, cropped back to HxW at row `offsets_y[n]` and column
    `offsets_x[n]` of the padded image (each in [0, 2 * pad]), and flipped left-right where `flips[n]`."""
    n, c, h, w = x.shape
    device = x.device
    offsets_y, offsets_x, flips = _to_device(device, offsets_y, offsets_x, flips)
    padded = F.pad(x, (pad, pad, pad, pad))  # (N, C, H + 2 pad, W + 2 pad)
    rows = offsets_y[:, None] + torch.arange(h, device=device)  # (N, H)
    cols = offsets_x[:, None] + torch.arange(w, device=device)  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    images = torch.arange(n, device=device)[:, None, None, None]
    channels = torch.arange(c, device=device)[None, :, None, None]
    return padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)


def _to_device(device: torch.device, offsets_y: Tensor, offsets_x: Tensor, flips: Tensor) -> tuple[Tensor, ...]:
    """The draws on `device`. To a GPU in one copy from pinned memory, non-blocking: a copy from pageable memory would
    first wait for every kernel queued on the stream, i.e. one host-device synchronisation per training step."""
    if offsets_y.device == device and offsets_x.device == device and flips.device == device:
        return offsets_y, offsets_x, flips
    if device.type != "cuda":
        return offsets_y.to(device), offsets_x.to(device), flips.to(device)
    packed = torch.stack([offsets_y.long(), offsets_x.long(), flips.long()]).pin_memory()  # (3, N)
    packed = packed.to(device, non_blocking=True)
    return packed[0], packed[1], packed[2].bool()


def draw_pad_crop_flip(n: int, generator: torch.Generator, pad: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """Offsets uniform in [0, 2 * pad] for rows and columns, and flips with p = 0.5, for `n` images (CPU tensors)."""
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets[0], offsets[1], flips


def random_pad_crop_flip(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """`pad_crop_flip` with offsets and flips drawn from `generator`."""
    return pad_crop_flip(x, *draw_pad_crop_flip(len(x), generator, pad), pad=pad)
