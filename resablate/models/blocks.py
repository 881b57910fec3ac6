"""Residual blocks: R1 Fig. 2 (basic) and Fig. 5 (bottleneck); R2 Fig. 4(e) full pre-activation.

All blocks share one signature, `Block(in_channels, width, stride, shortcut)`, output `width * expansion` channels, and
leave the merge to their shortcut module. Post-activation blocks apply ReLU after the merge (R1); pre-activation blocks
apply nothing after it (R2). Deviation switch: `Bottleneck(stride_on="3x3")` is torchvision's "v1.5" (R1 puts the stride
on the first 1x1 convolution, which is our default).

Every block has `zero_init_last()`, called by duck typing, which zeroes the last affine of the residual branch so the
block starts as its shortcut (Goyal et al. 2017; torchvision's `zero_init_residual`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resablate.registry import Registry

BLOCKS: Registry[type[nn.Module]] = Registry("block")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


@BLOCKS.register("basic")
class BasicBlock(nn.Module):
    """Two 3x3 convolutions, BN after each, ReLU after the first and after the merge (R1 Fig. 2)."""

    expansion = 1
    preactivation = False

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, width, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fx = F.relu(self.bn1(self.conv1(x)))  # (B, width, H/stride, W/stride)
        fx = self.bn2(self.conv2(fx))
        return F.relu(self.shortcut(x, fx))

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)


@BLOCKS.register("bottleneck")
class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand to 4x width (R1 Fig. 5).

    R1 strides the first 1x1; `stride_on="3x3"` is torchvision v1.5.
    """

    expansion = 4
    preactivation = False

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: nn.Module, stride_on: str = "1x1"):
        super().__init__()
        stride_1x1, stride_3x3 = _split_stride(stride, stride_on)
        self.conv1, self.bn1 = conv1x1(in_channels, width, stride_1x1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride_3x3), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv1x1(width, width * 4), nn.BatchNorm2d(width * 4)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fx = F.relu(self.bn1(self.conv1(x)))  # (B, width, H/s1, W/s1)
        fx = F.relu(self.bn2(self.conv2(fx)))  # (B, width, H/stride, W/stride)
        fx = self.bn3(self.conv3(fx))  # (B, 4*width, H/stride, W/stride)
        return F.relu(self.shortcut(x, fx))

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


@BLOCKS.register("preact_basic")
class PreActBasicBlock(nn.Module):
    """R2 full pre-activation: BN-ReLU-conv3x3-BN-ReLU-conv3x3, nothing after the merge. A projecting shortcut takes the
    pre-activated input (R2 code); identity and zero-pad shortcuts take the raw input."""

    expansion = 1
    preactivation = True

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: nn.Module):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_channels), conv3x3(in_channels, width, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(width), conv3x3(width, width)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        fx = self.conv1(pre)  # (B, width, H/stride, W/stride)
        fx = self.conv2(F.relu(self.bn2(fx)))
        return self.shortcut(pre if self.shortcut.preactivated else x, fx)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)


@BLOCKS.register("preact_bottleneck")
class PreActBottleneck(nn.Module):
    """R2 full pre-activation bottleneck (ResNet-164, -1001, -200): BN-ReLU before each of 1x1, 3x3, 1x1."""

    expansion = 4
    preactivation = True

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: nn.Module, stride_on: str = "1x1"):
        super().__init__()
        stride_1x1, stride_3x3 = _split_stride(stride, stride_on)
        self.bn1, self.conv1 = nn.BatchNorm2d(in_channels), conv1x1(in_channels, width, stride_1x1)
        self.bn2, self.conv2 = nn.BatchNorm2d(width), conv3x3(width, width, stride_3x3)
        self.bn3, self.conv3 = nn.BatchNorm2d(width), conv1x1(width, width * 4)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        fx = self.conv1(pre)  # (B, width, H/s1, W/s1)
        fx = self.conv2(F.relu(self.bn2(fx)))  # (B, width, H/stride, W/stride)
        fx = self.conv3(F.relu(self.bn3(fx)))  # (B, 4*width, H/stride, W/stride)
        return self.shortcut(pre if self.shortcut.preactivated else x, fx)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)


STRIDE_PLACES = ("1x1", "3x3")


def _split_stride(stride: int, stride_on: str) -> tuple[int, int]:
    if stride_on not in STRIDE_PLACES:
        raise ValueError(f"stride_on={stride_on!r} is not valid; valid: {', '.join(STRIDE_PLACES)}")
    return (stride, 1) if stride_on == "1x1" else (1, stride)
