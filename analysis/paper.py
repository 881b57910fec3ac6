"""R1's reported numbers, copied from the paper (He et al. 2015, Tables 1, 2, 3, 6), for the columns beside ours.

Every number here is the paper's; nothing is derived. Rows name the architecture in resablate's vocabulary (shortcut,
depth, block: the keys of summary.json), so a run matches a paper row by those three values. Rows whose architecture
resablate does not build (FitNet, and the Highway nets of Srivastava et al., which are not ResNets with gated shortcuts)
have `shortcut=None` and are listed for reference only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    label: str  # as the paper writes it
    shortcut: str | None  # resablate's shortcut name; None: not an architecture resablate builds
    depth: int
    block: str
    error: float  # the paper's headline top-1 error, %
    error5: float | None = None  # top-5 error, % (Table 3)
    mean: float | None = None  # mean over runs, where the paper gives one ("best (mean±std)")
    std: float | None = None
    params: str | None = None  # "# params" as printed
    repro: float | None = None  # github.com/akamaster/pytorch_resnet_cifar10's test error (its README), CIFAR-10 only

    @property
    def reference(self) -> float:
        """The paper number our mean is compared with: its mean where it gives one, else its single number."""
        return self.mean if self.mean is not None else self.error


# R1 Table 2: ImageNet val top-1 %, 10-crop; ResNets with option A.
TABLE2 = (
    PaperRow("plain-18", "none", 18, "basic", 27.94),
    PaperRow("plain-34", "none", 34, "basic", 28.54),
    PaperRow("ResNet-18", "zero_pad", 18, "basic", 27.88),
    PaperRow("ResNet-34", "zero_pad", 34, "basic", 25.03),
)

# R1 Table 3: ImageNet val top-1 / top-5 %, 10-crop; ResNet-50/101/152 use option B.
TABLE3 = (
    PaperRow("plain-34", "none", 34, "basic", 28.54, 10.02),
    PaperRow("ResNet-34 A", "zero_pad", 34, "basic", 25.03, 7.76),
    PaperRow("ResNet-34 B", "projection", 34, "basic", 24.52, 7.46),
    PaperRow("ResNet-34 C", "projection_all", 34, "basic", 24.19, 7.40),
    PaperRow("ResNet-50", "projection", 50, "bottleneck", 22.85, 6.71),
    PaperRow("ResNet-101", "projection", 101, "bottleneck", 21.75, 6.05),
    PaperRow("ResNet-152", "projection", 152, "bottleneck", 21.43, 5.71),
)

# R1 Table 6: CIFAR-10 test error %; ResNets with option A. FitNet and Highway rows are other papers' networks.
TABLE6 = (
    PaperRow("FitNet-19", None, 19, "-", 8.39, params="2.5M"),
    PaperRow("Highway-19", None, 19, "-", 7.54, mean=7.72, std=0.16, params="2.3M"),
    PaperRow("Highway-32", None, 32, "-", 8.80, params="1.25M"),
    PaperRow("ResNet-20", "zero_pad", 20, "basic", 8.75, params="0.27M", repro=8.27),
    PaperRow("ResNet-32", "zero_pad", 32, "basic", 7.51, params="0.46M", repro=7.37),
    PaperRow("ResNet-44", "zero_pad", 44, "basic", 7.17, params="0.66M", repro=6.90),
    PaperRow("ResNet-56", "zero_pad", 56, "basic", 6.97, params="0.85M", repro=6.61),
    PaperRow("ResNet-110", "zero_pad", 110, "basic", 6.43, mean=6.61, std=0.16, params="1.7M", repro=6.32),
    PaperRow("ResNet-1202", "zero_pad", 1202, "basic", 7.93, params="19.4M", repro=6.18),
)

# How R1 scored each ImageNet val image for its tables (R1 3.4: "In testing, for comparison studies we adopt the
# standard 10-crop testing"); Table 4's best results use fully-convolutional multi-scale testing.
PAPER_TEST_PROTOCOL = {"table2": "10-crop", "table3": "10-crop"}

# The data set each table reports on, in resablate's data names (conf/data/).
PAPER_DATASET = {"table2": "imagenet", "table3": "imagenet", "table6": "cifar10", "fig1": "cifar10", "fig4": "imagenet",
                 "fig6": "cifar10", "fig7": "cifar10"}

# R1 Table 1's FLOPs row (multiply-adds at 224x224, billions) is in resablate.models.tables.PAPER_GMACS; the parameter
# counts with option B and 1000 classes, as torchvision reports them (torchvision.models.resnet18 ... resnet152: the
# num_params of their IMAGENET1K_V1 weights):
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
