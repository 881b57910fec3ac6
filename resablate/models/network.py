"""Networks from names: stems, stages and the depth rules of R1 Table 1 (ImageNet) and R1 section 4.2 (CIFAR).

- `cifar`: 3x3 stem with 16 filters, three stages of n blocks at widths 16/32/64 on 32/16/8 maps; basic blocks give
  6n+2 weighted layers (R1 4.2), bottlenecks 9n+2 (R2: ResNet-164, -1001).
- `imagenet`: 7x7/2 stem with 64 filters and a 3x3/2 max-pool, four stages at widths 64/128/256/512 (R1 Table 1). For
  small inputs (side < 64, e.g. CIFAR-10 or Fashion-MNIST) the stem is the 3x3 one without max-pool, so ResNet-34 trains
  on 32x32.
- Pre-activation networks (R2 section 4.1): the first unit's BN-ReLU follows the stem convolution, and an extra BN-ReLU
  follows the last unit; the CIFAR stem is a bare convolution.

The network, not the block, decides each block's shortcut: the configured kind where the block changes shape, identity
elsewhere, or the configured kind everywhere when that kind says so (option C, gates). Init as R1 3.4: He (fan_out) for
convolutions, BN weight 1 and bias 0. The head is `x.mean((2, 3))`, deterministic on CUDA unlike AdaptiveAvgPool2d.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from resablate.models.blocks import BLOCKS, conv3x3
from resablate.models.shortcuts import SHORTCUTS, IdentityShortcut, changes_shape

FAMILIES = ("cifar", "imagenet")
FAMILY_WIDTHS = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}
STEM_WIDTH = {"cifar": 16, "imagenet": 64}
# R1 Table 1 (and R2's ResNet-200): depth -> (block kind, blocks per stage).
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# R2 names its CIFAR bottleneck nets by depth; where 6n+2 and 9n+2 both fit, these depths mean the bottleneck net.
CIFAR_BOTTLENECK_DEPTHS = (164, 1001)
SMALL_INPUT = 64  # image sides below this get the 3x3 stem and no max-pool
BLOCK_CHOICES = ("auto", "preact")  # pick basic/bottleneck (or their pre-activation twins) from the depth


def _kind(block: str) -> str:
    """'basic' or 'bottleneck': the shape of a block, whatever its activation order."""
    return "bottleneck" if BLOCKS[block].expansion == 4 else "basic"


def _layers_per_block(block: str) -> int:
    return 3 if _kind(block) == "bottleneck" else 2


@dataclass(frozen=True)
class Architecture:
    """What a depth, block and family resolve to: everything needed to build the stages."""

    family: str
    block: str
    stage_depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem_width: int
    small_input: bool

    @property
    def depth(self) -> int:
        """Weighted layers: stem + fc + the convolutions of the residual branches (R1 counting)."""
        return _layers_per_block(self.block) * sum(self.stage_depths) + 2


def _block_candidates(block: str) -> list[str]:
    if block == "auto":
        return ["basic", "bottleneck"]
    if block == "preact":
        return ["preact_basic", "preact_bottleneck"]
    if block not in BLOCKS:
        valid = ", ".join([*BLOCK_CHOICES, *sorted(BLOCKS)])
        raise ValueError(f"unknown block {block!r}; valid: {valid}")
    return [BLOCKS.canonical(block)]


def _cifar_fit(depth: int, candidates: list[str]) -> tuple[str, tuple[int, ...]] | None:
    fits = []
    for block in candidates:
        per_stage = 3 * _layers_per_block(block)
        if depth > 2 and (depth - 2) % per_stage == 0:
            fits.append((block, ((depth - 2) // per_stage,) * 3))
    if len(fits) > 1:  # auto with both shapes fitting: R2's named bottleneck depths, else R1's basic nets
        return fits[1] if depth in CIFAR_BOTTLENECK_DEPTHS else fits[0]
    return fits[0] if fits else None


def _imagenet_fit(depth: int, candidates: list[str]) -> tuple[str, tuple[int, ...]] | None:
    if depth not in IMAGENET_STAGES:
        return None
    kind, stages = IMAGENET_STAGES[depth]
    for block in candidates:
        if _kind(block) == kind:
            return block, stages
    return None


def _nearby_cifar(depth: int, candidates: list[str], count: int = 4) -> list[int]:
    valid = set()
    for block in candidates:
        step = 3 * _layers_per_block(block)
        n = max(1, (depth - 2) // step)
        valid.update(step * k + 2 for k in range(max(1, n - 2), n + 3))
    return sorted(sorted(valid, key=lambda d: (abs(d - depth), d))[:count])


def _depth_error(depth: int, families: Sequence[str], candidates: list[str]) -> ValueError:
    parts = []
    for family in families:
        if family == "cifar":
            rules = " or ".join(
                f"{3 * _layers_per_block(b)}n+2 ({b})" for b in dict.fromkeys(candidates) if b in BLOCKS
            )
            nearby = ", ".join(map(str, _nearby_cifar(depth, candidates)))
            parts.append(f"not {rules} for the cifar family (valid nearby: {nearby} ...)")
        else:
            kinds = {_kind(b) for b in candidates}
            valid = [f"{d} ({k})" for d, (k, _) in IMAGENET_STAGES.items() if k in kinds]
            parts.append(f"not one of {', '.join(valid) or 'none'} for the imagenet family")
    blocks = "/".join(candidates)
    return ValueError(f"depth {depth} with block {blocks}: " + "; and ".join(parts))


def resolve_architecture(
    depth: int | None = None,
    block: str = "auto",
    family: str = "auto",
    image_size: int | None = None,
    stage_depths: Sequence[int] | None = None,
    widths: Sequence[int] | None = None,
    width_multiplier: float = 1.0,
) -> Architecture:
    """Turn the names a user types into stages, or fail at once naming the bad value and what is valid."""
    if family not in ("auto", *FAMILIES):
        raise ValueError(f"unknown family {family!r}; valid: auto, {', '.join(FAMILIES)}")
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier={width_multiplier} must be > 0")
    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size={image_size} is too small; the networks need at least 8x8 inputs")
    candidates = _block_candidates(block)

    if stage_depths is not None:
        stage_depths = tuple(int(n) for n in stage_depths)
        if not stage_depths or min(stage_depths) < 1:
            raise ValueError(f"stage_depths={list(stage_depths)} must be a non-empty list of positive block counts")
        if family == "auto":
            family = {3: "cifar", 4: "imagenet"}.get(
                len(stage_depths), "cifar" if len(stage_depths) < 4 else "imagenet"
            )
        chosen = candidates[0]
        if depth is not None and depth != _layers_per_block(chosen) * sum(stage_depths) + 2:
            raise ValueError(
                f"depth {depth} disagrees with stage_depths={list(stage_depths)} and block {chosen}, which give "
                f"{_layers_per_block(chosen) * sum(stage_depths) + 2}; give one of them"
            )
        fit = (chosen, stage_depths)
    else:
        if depth is None:
            raise ValueError("give depth (e.g. 20, 56, 110 for cifar; 18, 34, 50 for imagenet) or stage_depths")
        depth = int(depth)
        families = FAMILIES if family == "auto" else (family,)
        fitting = {}
        for fam in families:
            found = _cifar_fit(depth, candidates) if fam == "cifar" else _imagenet_fit(depth, candidates)
            if found:
                fitting[fam] = found
        if not fitting:
            raise _depth_error(depth, families, candidates)
        if len(fitting) == 1:
            family = next(iter(fitting))
        elif image_size is None:
            raise ValueError(
                f"depth {depth} fits both the cifar and the imagenet family; pass family=cifar or family=imagenet "
                "(or the data set's image_size, which decides it)"
            )
        else:
            family = "cifar" if image_size < SMALL_INPUT else "imagenet"
        fit = fitting[family]

    block, stage_depths = fit
    base = tuple(widths) if widths is not None else FAMILY_WIDTHS[family][: len(stage_depths)]
    if len(stage_depths) > len(FAMILY_WIDTHS[family]) and widths is None:
        base = base + tuple(base[-1] * 2 ** (k + 1) for k in range(len(stage_depths) - len(base)))
    if len(base) != len(stage_depths) or min(base) < 1:
        raise ValueError(
            f"widths={list(base)} must be {len(stage_depths)} positive numbers, one per stage "
            f"(stage_depths={list(stage_depths)})"
        )
    scaled = tuple(max(1, round(w * width_multiplier)) for w in base)
    stem = max(1, round(STEM_WIDTH[family] * width_multiplier)) if widths is None else scaled[0]
    small = family == "cifar" or (image_size is not None and image_size < SMALL_INPUT)
    return Architecture(family, block, stage_depths, scaled, stem, small)


def _shortcut_class(shortcut: str, options: Mapping) -> type[nn.Module]:
    cls = SHORTCUTS[shortcut]
    accepted = [
        p
        for p in inspect.signature(cls.__init__).parameters
        if p not in ("self", "in_channels", "out_channels", "stride")
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"shortcut {SHORTCUTS.canonical(shortcut)!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    return cls


class ResNet(nn.Module):
    """stem -> stages -> head. Build it with `build_network`."""

    def __init__(
        self,
        arch: Architecture,
        shortcut: str = "zero_pad",
        shortcut_options: Mapping | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        stride_on: str = "1x1",
        zero_init_last: bool = False,
    ):
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes={num_classes} and in_channels={in_channels} must be >= 1")
        options = dict(shortcut_options or {})
        shortcut_cls = _shortcut_class(shortcut, options)
        block_cls = BLOCKS[arch.block]
        if "bn" in inspect.signature(shortcut_cls.__init__).parameters and options.get("bn") is None:
            options["bn"] = not block_cls.preactivation  # R1: projection + BN; R2's pre-activation code: a bare 1x1
        self.arch = arch
        self.shortcut_name = SHORTCUTS.canonical(shortcut)
        self.preactivation = block_cls.preactivation

        self.stem = self._stem(arch, in_channels, self.preactivation)
        block_options = {"stride_on": stride_on} if block_cls.expansion == 4 else {}
        channels, stages = arch.stem_width, []
        for s, (n, width) in enumerate(zip(arch.stage_depths, arch.widths, strict=True)):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                out = width * block_cls.expansion
                if changes_shape(channels, out, stride) or shortcut_cls.everywhere:
                    try:
                        link = shortcut_cls(channels, out, stride, **options)
                    except ValueError as err:
                        raise ValueError(f"stage {s + 1} block {b + 1}: {err}") from None
                else:
                    link = IdentityShortcut(channels, out, stride)
                blocks.append(block_cls(channels, width, stride, link, **block_options))
                channels = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        # R2: pre-activation nets end with the BN-ReLU that the last unit leaves out.
        self.final_act = (
            nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True)) if self.preactivation else nn.Identity()
        )
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_last)

    @staticmethod
    def _stem(arch: Architecture, in_channels: int, preactivation: bool) -> nn.Sequential:
        width = arch.stem_width
        if arch.small_input:
            conv = conv3x3(in_channels, width)
            # R2 on CIFAR: the first unit's BN-ReLU follows this convolution directly.
            return (
                nn.Sequential(conv)
                if preactivation
                else nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            )
        return nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if hasattr(m, "reset_gate"):
                m.reset_gate()
            if zero_init_last and hasattr(m, "zero_init_last"):
                m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, stem_width, H or H/4, W or W/4)
        x = self.stages(x)  # (B, channels, H/8 ..., W/8 ...)
        return self.final_act(x).mean((2, 3))  # (B, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # (B, num_classes)

    def describe(self) -> dict:
        a = self.arch
        return {
            "depth": a.depth,
            "family": a.family,
            "block": a.block,
            "shortcut": self.shortcut_name,
            "stage_depths": list(a.stage_depths),
            "widths": list(a.widths),
        }


def build_network(
    depth: int | None = None,
    block: str = "auto",
    shortcut: str = "zero_pad",
    family: str = "auto",
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | None = None,
    stage_depths: Sequence[int] | None = None,
    widths: Sequence[int] | None = None,
    width_multiplier: float = 1.0,
    stride_on: str = "1x1",
    zero_init_last: bool = False,
    shortcut_options: Mapping | None = None,
) -> ResNet:
    """A plain or residual network from names, e.g. `build_network(depth=110, shortcut="zero_pad")` (ResNet-110,
    option A).

    `block="auto"` picks basic or bottleneck from the depth, `block="preact"` their R2 pre-activation twins;
    `family="auto"` picks cifar or imagenet from the depth, and from `image_size` where both fit.
    """
    arch = resolve_architecture(depth, block, family, image_size, stage_depths, widths, width_multiplier)
    return ResNet(arch, shortcut, shortcut_options, num_classes, in_channels, stride_on, zero_init_last)
