"""Shortcut connections: R1 section 3.3 (options A, B, C), Highway Networks (HW) and R2 Table 1 / Fig. 2 variants.

A shortcut owns the merge of a block's residual branch `fx` with its input `x`: `out = shortcut(x, fx)`. Blocks never
branch on the kind of shortcut. The network picks, per block, the configured kind where the block changes shape and
`IdentityShortcut` elsewhere, unless the kind sets `everywhere = True` (option C, gates, scaling and dropout act on
every block).

Every kind is registered under the snake_case name used by `conf/shortcut/NAME.yaml`, sweeps, run folders and tables.
Where a kind needs to carry `x` across a change of shape (gates, scaling, dropout), `carry` names the option A or B
path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resablate.registry import Registry

SHORTCUTS: Registry[type[nn.Module]] = Registry("shortcut")


def changes_shape(in_channels: int, out_channels: int, stride: int) -> bool:
    return stride != 1 or in_channels != out_channels


def conv1x1_bn(in_channels: int, out_channels: int, stride: int, bn: bool = True) -> nn.Sequential:
    """A 1x1 projection, followed by BN unless `bn=False` (R2's pre-activation units: a bare convolution)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if bn else nn.Sequential(conv)


class ZeroPad(nn.Module):
    """Option A's carry: subsample by `stride`, then append zero channels (R1 3.3). No parameters.

    A real module, not a lambda, so that networks pickle and survive spawned processes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"zero-padding cannot shrink channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (B, C, H/s, W/s)
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (B, C + extra, H/s, W/s)
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


CARRIES = ("identity", "zero_pad", "projection")


def make_carry(carry: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The path that carries `x` to the merge: identity where the shape holds, option A or B where it changes."""
    if carry not in CARRIES:
        raise ValueError(f"unknown carry {carry!r}; valid: {', '.join(CARRIES)}")
    if not changes_shape(in_channels, out_channels, stride):
        return nn.Identity()
    if carry == "zero_pad":
        return ZeroPad(in_channels, out_channels, stride)
    if carry == "projection":
        return conv1x1_bn(in_channels, out_channels, stride)
    raise ValueError(
        f"carry 'identity' cannot cross a change of shape ({in_channels}->{out_channels} channels, stride {stride}); "
        "use carry=zero_pad or carry=projection"
    )


class Shortcut(nn.Module):
    """Base of all shortcuts: `forward(x, fx)` merges. `everywhere` says whether the network uses this kind on blocks
    that keep their shape too; `preactivated` whether a pre-activation block hands it its pre-activated input (R2:
    projections take the BN-ReLU output)."""

    everywhere = False
    preactivated = False

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride


@SHORTCUTS.register("none", "plain")
class NoShortcut(Shortcut):
    """Plain network: the block's output is its residual branch alone."""

    everywhere = True

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx


@SHORTCUTS.register("identity")
class IdentityShortcut(Shortcut):
    """`fx + x`; only where the block keeps its shape (the network refuses it elsewhere)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        if changes_shape(in_channels, out_channels, stride):
            raise ValueError(
                f"shortcut 'identity' cannot be used where a block changes shape ({in_channels}->{out_channels} "
                f"channels, stride {stride}); use 'zero_pad' (option A) or 'projection' (option B)"
            )
        super().__init__(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx + x


@SHORTCUTS.register("zero_pad", "A")
class ZeroPadShortcut(Shortcut):
    """Option A (R1 3.3): identity; where dimensions grow, stride-2 subsampling plus zero channels. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__(in_channels, out_channels, stride)
        self.carry = ZeroPad(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx + self.carry(x)


@SHORTCUTS.register("projection", "B")
class ProjectionShortcut(Shortcut):
    """Option B (R1 3.3, Eq. 2): a 1x1 convolution + BN where dimensions change, identity elsewhere.

    `bn`: whether BN follows the convolution. None (the default) lets the network choose from the block: yes in R1's
    post-activation blocks, no in R2's pre-activation ones, where R2's code applies a bare 1x1 convolution to the
    pre-activated input that the residual branch shares (ResNet-164: 1,703,258 parameters, not 1,704,154). `bn=true`
    keeps a BN-projection in a pre-activation net, as an explicit variant."""

    preactivated = True

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn: bool | None = None):
        super().__init__(in_channels, out_channels, stride)
        self.proj = conv1x1_bn(in_channels, out_channels, stride, bn=bn is not False)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx + self.proj(x)


@SHORTCUTS.register("projection_all", "C")
class ProjectionAllShortcut(ProjectionShortcut):
    """Option C (R1 3.3): every shortcut is a 1x1 projection. R2 Table 1's "1x1 conv shortcut" is this kind."""

    everywhere = True


class _Gate(Shortcut):
    """A sigmoid gate `g = sigmoid(conv1x1(x) + b)` with a carry path S for `x`; subclasses say how g mixes."""

    everywhere = True
    default_bias = -2.0

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, gate_bias: float | None = None, carry: str = "zero_pad"
    ):
        super().__init__(in_channels, out_channels, stride)
        self.gate = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=True)
        self.gate_bias = self.default_bias if gate_bias is None else float(gate_bias)
        nn.init.constant_(self.gate.bias, self.gate_bias)
        self.carry = make_carry(carry, in_channels, out_channels, stride)
        self.preactivated = carry == "projection"

    def reset_gate(self) -> None:
        """Called by the network after its weight init, which must not undo the negative bias."""
        nn.init.constant_(self.gate.bias, self.gate_bias)

    def extra_repr(self) -> str:
        return f"gate_bias={self.gate_bias}"


@SHORTCUTS.register("highway")
class HighwayShortcut(_Gate):
    """Highway gate (HW): `t * F(x) + (1 - t) * S(x)`, `t = sigmoid(W_T x + b_T)`; b_T starts negative (-1..-3 in HW),
    so a layer starts close to carrying x through."""

    default_bias = -2.0

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * fx + (1 - t) * self.carry(x)


@SHORTCUTS.register("exclusive_gate")
class ExclusiveGateShortcut(HighwayShortcut):
    """R2 Fig. 2(c) exclusive gating: F scaled by g, shortcut by 1 - g. The highway formula with R2's bias (-6)."""

    default_bias = -6.0


@SHORTCUTS.register("shortcut_gate")
class ShortcutGateShortcut(_Gate):
    """R2 Fig. 2(d) shortcut-only gating: `F(x) + (1 - g) * S(x)`; 6.91% on ResNet-110 at b_g = -6."""

    default_bias = -6.0

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(x))
        return fx + (1 - g) * self.carry(x)


@SHORTCUTS.register("constant_scale")
class ConstantScaleShortcut(Shortcut):
    """R2 Fig. 2(b): `f_scale * F(x) + s_scale * S(x)`; 0.5/0.5 gave 12.35% on ResNet-110."""

    everywhere = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        f_scale: float = 0.5,
        s_scale: float = 0.5,
        carry: str = "zero_pad",
    ):
        super().__init__(in_channels, out_channels, stride)
        self.f_scale, self.s_scale = float(f_scale), float(s_scale)
        self.carry = make_carry(carry, in_channels, out_channels, stride)
        self.preactivated = carry == "projection"

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return self.f_scale * fx + self.s_scale * self.carry(x)

    def extra_repr(self) -> str:
        return f"f_scale={self.f_scale}, s_scale={self.s_scale}"


@SHORTCUTS.register("dropout_shortcut")
class DropoutShortcut(Shortcut):
    """R2 Fig. 2(f): dropout on the shortcut, `F(x) + dropout(S(x))`; fails to train at p = 0.5 in R2."""

    everywhere = True

    def __init__(self, in_channels: int, out_channels: int, stride: int, p: float = 0.5, carry: str = "zero_pad"):
        super().__init__(in_channels, out_channels, stride)
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"dropout_shortcut p={p} is not a probability in [0, 1)")
        self.dropout = nn.Dropout(float(p))
        self.carry = make_carry(carry, in_channels, out_channels, stride)
        self.preactivated = carry == "projection"

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx + self.dropout(self.carry(x))
