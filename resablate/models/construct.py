"""R1 section 1's constructed solution: "There exists a solution by construction to the deeper model: the added layers
are identity mapping, and the other layers are copied from the learned shallower model. The existence of this
constructed solution indicates that a deeper model should produce no higher training error than its shallower
counterpart."

`extend(shallow, deep, batches)` copies the stem, the head and, stage by stage, the shallow net's blocks into the first
blocks of the deeper net of the same family, widths and block type, and sets each added block to the identity:

- each 3x3 convolution to the Dirac kernel (output channel c = input channel c at the centre tap);
- each BatchNorm to the inverse of the normalisation it applies: running mean and variance set to the per-channel
  mean m and variance v of what reaches it during training, weight sqrt(v + eps) and bias m. In eval mode that is
  (x - m) / sqrt(v + eps) * sqrt(v + eps) + m = x for any m and v, up to rounding: the constructed net has exactly
  the shallow net's outputs, so its errors. In training mode a BN normalises by the batch's own statistics, so it is
  the identity only as far as they are m and v; m and v are therefore measured as training sees them: `batches` run
  through a copy of the shallow net in training mode (its BNs on batch statistics), every added block of a stage
  seeing the output of that stage's last copied block (the ones before it are identities too);
- the ReLUs pass their inputs unchanged, because every block's input is the output of a ReLU (>= 0).

The shortcut of an added block must keep the shape (it does: only first blocks of stages change it) and add nothing
of its own: plain nets (the paper's case) have none; a ResNet's identity shortcut would add x a second time, so
extension is for plain nets (shortcut=none) only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from resablate.models.blocks import BasicBlock
from resablate.models.network import ResNet
from resablate.models.shortcuts import NoShortcut


def extend(shallow: ResNet, deep: ResNet, batches: Iterable[torch.Tensor]) -> ResNet:
    """`deep` with the weights of `shallow` and identity blocks after them, in place; see the module docstring."""
    _check_compatible(shallow, deep)
    deep.stem.load_state_dict(shallow.stem.state_dict())
    deep.final_act.load_state_dict(shallow.final_act.state_dict())
    deep.fc.load_state_dict(shallow.fc.state_dict())
    for shallow_stage, deep_stage in zip(shallow.stages, deep.stages, strict=True):
        for source, target in zip(shallow_stage, deep_stage, strict=False):
            target.load_state_dict(source.state_dict())
    stats = stage_output_stats(shallow, batches)
    for s, (deep_stage, (mean, var)) in enumerate(zip(deep.stages, stats, strict=True)):
        for block in list(deep_stage)[len(shallow.stages[s]):]:
            _make_identity(block, mean, var)
    return deep


def _check_compatible(shallow: ResNet, deep: ResNet) -> None:
    a, b = shallow.arch, deep.arch
    if (a.family, a.block, a.widths, a.stem_width, a.small_input) != (b.family, b.block, b.widths, b.stem_width,
                                                                       b.small_input):
        raise ValueError(f"model.init_from: the shallower net ({a.family}, {a.block}, widths {list(a.widths)}) and "
                         f"this one ({b.family}, {b.block}, widths {list(b.widths)}) differ in more than depth")
    if any(n > m for n, m in zip(a.stage_depths, b.stage_depths, strict=True)):
        raise ValueError(f"model.init_from: the net to extend has stages {list(a.stage_depths)}, deeper than this "
                         f"one's {list(b.stage_depths)}")
    if b.block != "basic" or shallow.shortcut_name != "none" or deep.shortcut_name != "none":
        raise ValueError(f"model.init_from extends plain nets of basic blocks (shortcut=none, R1 section 1); here "
                         f"{shallow.shortcut_name} -> {deep.shortcut_name}, block {b.block}")
    if shallow.fc.out_features != deep.fc.out_features:
        raise ValueError(f"model.init_from: {shallow.fc.out_features} classes there, {deep.fc.out_features} here")


@torch.no_grad()
def stage_output_stats(net: ResNet, batches: Iterable[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per stage, the per-channel mean and (biased, as BN's normalisation) variance of its output as training sees it:
    a copy of `net` in training mode, so that `net`'s own running statistics stay as they are."""
    sums: list[list] = [[0.0, 0.0, 0] for _ in net.stages]
    probe = copy.deepcopy(net).train()
    for x in batches:
        h = probe.stem(x)
        for s, stage in enumerate(probe.stages):
            h = stage(h)
            v = h.double()
            sums[s][0] = sums[s][0] + v.sum((0, 2, 3))
            sums[s][1] = sums[s][1] + v.square().sum((0, 2, 3))
            sums[s][2] += v.shape[0] * v.shape[2] * v.shape[3]
    if not sums[0][2]:
        raise ValueError("model.init_from: no training images to measure the added layers' statistics on")
    out = []
    for total, squares, n in sums:
        mean = total / n
        out.append((mean.float(), (squares / n - mean.square()).clamp_min(0).float()))
    return out


@torch.no_grad()
def _make_identity(block: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> None:
    if not isinstance(block, BasicBlock) or not isinstance(block.shortcut, NoShortcut):
        raise ValueError(f"model.init_from: cannot make a {type(block).__name__} an identity")
    for conv in (block.conv1, block.conv2):
        nn.init.dirac_(conv.weight)
    for bn in (block.bn1, block.bn2):
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean)
        bn.num_batches_tracked.zero_()
