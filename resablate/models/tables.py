"""R1 Table 1 (ImageNet architectures) and the parameter column of R1 Table 6 (CIFAR-10), regenerated from the
builder."""

from __future__ import annotations

import pandas as pd

from resablate.models.counting import count_macs, count_params
from resablate.models.network import IMAGENET_STAGES, build_network

# R1 Table 1, "FLOPs" row (multiply-adds at 224x224), in billions.
PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# R1 Table 6, "# params" column, as printed.
PAPER_CIFAR_PARAMS = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M", 1202: "19.4M"}


def table1(shortcut: str = "projection", stride_on: str = "1x1") -> pd.DataFrame:
    """ImageNet family with 1000 classes at 224x224: depth, block, blocks per stage, params, GMACs (ours and R1's)."""
    rows = []
    for depth in PAPER_GMACS:
        net = build_network(depth, shortcut=shortcut, family="imagenet", num_classes=1000, stride_on=stride_on)
        gmacs = count_macs(net, (1, 3, 224, 224)) / 1e9
        rows.append(
            {
                "depth": depth,
                "block": IMAGENET_STAGES[depth][0],
                "blocks_per_stage": "x".join(map(str, net.arch.stage_depths)),
                "params": count_params(net),
                "gmacs": round(gmacs, 2),
                "paper_gmacs": PAPER_GMACS[depth],
                "diff_pct": round(100 * (gmacs - PAPER_GMACS[depth]) / PAPER_GMACS[depth], 1),
            }
        )
    return pd.DataFrame(rows)


def cifar_params(shortcut: str = "zero_pad") -> pd.DataFrame:
    """CIFAR family, basic blocks, option A: the exact parameter counts behind R1 Table 6's rounded column."""
    rows = []
    for depth, paper in PAPER_CIFAR_PARAMS.items():
        net = build_network(depth, shortcut=shortcut, family="cifar", num_classes=10)
        rows.append(
            {
                "depth": depth,
                "n": net.arch.stage_depths[0],
                "params": count_params(net),
                "gmacs": round(count_macs(net, (1, 3, 32, 32)) / 1e9, 3),
                "paper_params": paper,
            }
        )
    return pd.DataFrame(rows)
