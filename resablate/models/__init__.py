"""The model zoo: plain and residual networks composed from registry names (R1, R2, Highway)."""

from resablate.models.blocks import BLOCKS
from resablate.models.counting import count_macs, count_params
from resablate.models.network import Architecture, ResNet, build_network, resolve_architecture
from resablate.models.shortcuts import SHORTCUTS

__all__ = [
    "BLOCKS",
    "SHORTCUTS",
    "Architecture",
    "ResNet",
    "build_network",
    "count_macs",
    "count_params",
    "resolve_architecture",
]
