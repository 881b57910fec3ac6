"""Parameter and multiply-add counts, as R1 reports them ("FLOPs" in R1 Table 1 are multiply-adds).

`torch.utils.flop_counter.FlopCounterMode` counts 2 FLOPs per multiply-add of convolutions and matrix products; we halve
it. Like R1, BN, ReLU, pooling and additions are not counted. Counting runs on the meta device, so a ResNet-152 at
224x224 costs no compute.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(net: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def count_macs(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass in eval mode for an input of `input_shape` (batch included)."""
    meta = copy.deepcopy(net).to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(input_shape, device="meta"))
    return counter.get_total_flops() // 2
