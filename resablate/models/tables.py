"""R1 Table 1 (ImageNet architectures) and the parameter column of R1 Table 6 (CIFAR-10), regenerated from the
builder."""

from __future__ import annotations

import pandas as pd
import torch

from resablate.models.counting import count_macs, count_params
from resablate.models.network import IMAGENET_STAGES, build_network

# R1 Table 1, "FLOPs" row (multiply-adds at 224x224), in billions.
PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# R1 section 3.3, the complexity of the baselines: the 34-layer plain net 3.6 billion FLOPs, "18% of VGG-19 (19.6
# billion FLOPs)".
PAPER_BASELINE_GMACS = {"VGG-19": 19.6, "34-layer plain": 3.6}
# R1 Table 6, "# params" column, as printed.
PAPER_CIFAR_PARAMS = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M", 1202: "19.4M"}


def table1(shortcut: str = "projection", stride_on: str = "1x1") -> pd.DataFrame:
    """ImageNet family with 1000 classes at 224x224: depth, block, blocks per stage, params, GMACs (ours and R1's);
    then R1 3.3's baselines, counted the same way: torchvision's VGG-19 and our 34-layer plain net."""
    import torchvision  # only for the VGG-19 row

    rows = []
    for depth in PAPER_GMACS:
        with torch.device("meta"):  # shapes only: counted, never initialised (VGG-19's 144M weights took seconds)
            net = build_network(depth, shortcut=shortcut, family="imagenet", num_classes=1000, stride_on=stride_on)
        rows.append(_row(f"{depth}-layer", depth, IMAGENET_STAGES[depth][0], net, PAPER_GMACS[depth],
                         "x".join(map(str, net.arch.stage_depths))))
    with torch.device("meta"):
        plain = build_network(34, shortcut="none", family="imagenet", num_classes=1000)
        vgg = torchvision.models.vgg19()
    baselines = {"VGG-19": (19, "vgg", vgg, "16 conv + 3 fc"),
                 "34-layer plain": (34, "basic", plain, "x".join(map(str, plain.arch.stage_depths)))}
    for name, (depth, block, net, stages) in baselines.items():
        rows.append(_row(name, depth, block, net, PAPER_BASELINE_GMACS[name], stages))
    return pd.DataFrame(rows)


def _row(name: str, depth: int, block: str, net, paper_gmacs: float, stages: str) -> dict:
    gmacs = count_macs(net, (1, 3, 224, 224)) / 1e9
    return {"name": name, "depth": depth, "block": block, "blocks_per_stage": stages, "params": count_params(net),
            "gmacs": round(gmacs, 2), "paper_gmacs": paper_gmacs,
            "diff_pct": round(100 * (gmacs - paper_gmacs) / paper_gmacs, 1)}


def cifar_params(shortcut: str = "zero_pad") -> pd.DataFrame:
    """CIFAR family, basic blocks, option A: the exact parameter counts behind R1 Table 6's rounded column."""
    rows = []
    for depth, paper in PAPER_CIFAR_PARAMS.items():
        with torch.device("meta"):
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
