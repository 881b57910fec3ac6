"""ImageNet 2012 classification (R1 section 3.4), from ImageFolder trees `<root>/train/<class>/*` and
`<root>/val/<class>/*`.

Training (R1 3.4, following Krizhevsky et al. and Simonyan & Zisserman): "The image is resized with its shorter side
randomly sampled in [256, 480] for scale augmentation. A 224x224 crop is randomly sampled from an image or its
horizontal flip, with the per-pixel mean subtracted. The standard color augmentation in [21] is used." Here: shorter
side uniform in [256, 480], random 224 crop, horizontal flip, AlexNet's PCA lighting noise (std 0.1), then per-channel
normalization. Validation during training: shorter side 256, centre 224 crop (the "center crop" of R1 Fig. 4).

The test (after training, and `summary.json`'s `test_error`) follows `test_crops` / `test_scales` (R1 3.4):
- `test_crops=1` (default): the centre crop, as validation;
- `test_crops=10`: "the standard 10-crop testing" (R1 3.4, Tables 2 and 3): shorter side 256, the four corners and the
  centre of the 224 crop and their horizontal flips, softmax scores averaged;
- `test_scales=[224,256,384,480,640]`: "the fully-convolutional form ... average the scores at multiple scales (images
  are resized such that the shorter side is in {224, 256, 384, 480, 640})" (R1 3.4, Table 4): the whole image at each
  scale, one image per batch (their aspect ratios differ), scores averaged over the scales.
The averaging is resablate.models.scoring.class_scores; `test_protocol` names the protocol for the summary.

Deviations: per-channel mean/std normalization (the usual ImageNet statistics) stands in for the per-pixel mean image,
which would need a pass over 1.28M images of different sizes. No split is held out of train/: val/ is the validation
set and serves both `val_dataloader` and `test_dataloader` (the paper reports on it); `val_size` must be 0. ImageNet is
never downloaded (its licence requires a login): `download` is accepted for a uniform config and has no effect. Images
are decoded by `num_workers` worker processes; under DDP Lightning's DistributedSampler shards the loaders and pads the
evaluation set to a multiple of the world size, so up to world_size - 1 validation images can count twice when 50,000
does not divide.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from resablate.data.base import DATASETS, SHUFFLE, SPLIT, CorruptDataError, check_arguments, per_rank, seeded_generator

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # per-channel RGB statistics of the ImageNet training set
SCALES = (256, 480)  # R1 3.4: shorter side sampled in [256, 480]
CROP, EVAL_RESIZE = 224, 256
SPLITS = ("train", "val")


class Lighting(nn.Module):
    """AlexNet's colour augmentation (Krizhevsky et al. 2012, section 4.1; R1's "standard color augmentation"): add
    `eigvec @ (alpha * eigval)` to every pixel of an RGB image in [0, 1], alpha ~ N(0, std^2) per image. The eigenvalues
    and eigenvectors of ImageNet's RGB covariance are those of fb.resnet.torch."""

    def __init__(self, std: float = 0.1):
        super().__init__()
        self.std = std
        self.register_buffer("eigval", torch.tensor([0.2175, 0.0188, 0.0045]))
        self.register_buffer("eigvec", torch.tensor([[-0.5675, 0.7192, 0.4009],
                                                     [-0.5808, -0.0045, -0.8140],
                                                     [-0.5836, -0.6948, 0.4203]]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (3, H, W) float in [0, 1]
        alpha = torch.randn(3) * self.std
        return image + (self.eigvec @ (alpha * self.eigval))[:, None, None]


def train_transform() -> v2.Compose:
    return v2.Compose([
        v2.RandomShortestSize(list(range(SCALES[0], SCALES[1] + 1))),
        v2.RandomCrop(CROP),
        v2.RandomHorizontalFlip(),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        Lighting(0.1),
        v2.Normalize(MEAN, STD),
    ])


def eval_transform() -> v2.Compose:
    return v2.Compose([v2.Resize(EVAL_RESIZE), v2.CenterCrop(CROP), _to_tensor()])


class TenCrops(nn.Module):
    """10-crop testing: shorter side 256, the corners and centre of the 224 crop and their flips, stacked (10, 3, 224,
    224) in torchvision's TenCrop order."""

    def __init__(self):
        super().__init__()
        self.resize, self.crops = v2.Resize(EVAL_RESIZE), v2.TenCrop(CROP)
        self.to_tensor = _to_tensor()

    def forward(self, image) -> torch.Tensor:
        return torch.stack([self.to_tensor(crop) for crop in self.crops(self.resize(image))])


class Scales(nn.Module):
    """Fully-convolutional multi-scale testing: the whole image with its shorter side at each scale, one tensor each."""

    def __init__(self, scales: list[int]):
        super().__init__()
        self.resizes = [v2.Resize(scale) for scale in scales]
        self.to_tensor = _to_tensor()

    def forward(self, image) -> list[torch.Tensor]:
        return [self.to_tensor(resize(image)) for resize in self.resizes]


def _to_tensor() -> v2.Compose:
    return v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


def one_image_per_batch(samples: list) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Collate for multi-scale testing: ([(1, 3, H_s, W_s) per scale], labels (1,))."""
    ((scales, label),) = samples
    return [scale[None] for scale in scales], torch.tensor([label])


TEST_CROPS = (1, 10)


def check_protocol(test_crops: int, test_scales: list[int] | None) -> None:
    if isinstance(test_crops, bool) or test_crops not in TEST_CROPS:
        raise ValueError(f"test_crops={test_crops!r} is not valid; valid: 1 (centre crop), 10 (R1's 10-crop testing)")
    if test_scales is None:
        return
    if not isinstance(test_scales, (list, tuple)) or not test_scales or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= CROP for s in test_scales):
        raise ValueError(f"test_scales={test_scales!r} is not valid; valid: null, or a list of shorter sides >= {CROP} "
                         "(R1: [224,256,384,480,640])")
    if test_crops != 1:
        raise ValueError(f"test_crops={test_crops} with test_scales={list(test_scales)}: choose one protocol "
                         "(10-crop, or multi-scale on whole images)")


def class_folders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def has_image(folder: Path) -> bool:
    return any(entry.name.lower().endswith(IMG_EXTENSIONS) for entry in os.scandir(folder) if entry.is_file())


@DATASETS.register("imagenet")
class ImageNetData(pl.LightningDataModule):
    """ImageNet from `<root>/train/` and `<root>/val/`, decoded by DataLoader workers."""

    name = "imagenet"
    num_classes = 1000
    in_channels = 3
    image_size = CROP

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 0,
        train_size: int | None = None,
        augment: bool = True,
        seed: int = 0,
        num_workers: int = 8,
        test_crops: int = 1,
        test_scales: list[int] | None = None,
    ):
        super().__init__()
        check_arguments(batch_size, eval_batch_size, val_size, train_size, seed)
        check_protocol(test_crops, test_scales)
        self.test_crops, self.test_scales = test_crops, list(test_scales) if test_scales is not None else None
        if val_size != 0:
            raise ValueError(f"val_size={val_size} must be 0 for imagenet: val/ is the validation set")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers={num_workers!r} must be an integer >= 0")
        self.root, self.download = root, download
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.val_size, self.train_size, self.augment, self.seed = val_size, train_size, augment, seed
        self.num_workers = num_workers
        self.num_train: int | None = None  # known after setup
        self._train: Dataset | None = None
        self._val: Dataset | None = None

    def _missing(self, detail: str) -> FileNotFoundError:
        where = Path(self.root).resolve() if self.root is not None else "data.root (not set)"
        return FileNotFoundError(
            f"ImageNet not found under {where}: {detail}. Expected ImageFolder trees train/<class>/*.JPEG and "
            f"val/<class>/*.JPEG there (ILSVRC2012, val images sorted into the train class folders, e.g. with "
            f"valprep.sh). ImageNet cannot be downloaded automatically: get it from https://image-net.org (login "
            f"required) and set data.root=/path/to/imagenet."
        )

    def check(self) -> None:
        """train/ and val/ exist, hold the same class folders (at most 1000), and their first class holds an image."""
        if self.root is None:
            raise self._missing("no root given")
        classes = {}
        for split in SPLITS:
            folder = Path(self.root) / split
            if not folder.is_dir():
                raise self._missing(f"no folder {split}/")
            classes[split] = class_folders(folder)
            if not classes[split] or not has_image(folder / classes[split][0]):
                raise self._missing(f"{split}/ holds no class folder with images")
        if classes["train"] != classes["val"]:
            odd = sorted(set(classes["train"]) ^ set(classes["val"]))
            raise CorruptDataError(f"{self.root}: train/ and val/ have different class folders, e.g. {odd[:5]}")
        if len(classes["train"]) > self.num_classes:
            raise CorruptDataError(
                f"{self.root}/train has {len(classes['train'])} class folders, more than ImageNet's {self.num_classes}"
            )

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        self.check()
        root = Path(self.root)
        train = ImageFolder(str(root / "train"), transform=train_transform() if self.augment else eval_transform())
        if self.train_size is not None:
            if self.train_size > len(train):
                raise ValueError(
                    f"train_size={self.train_size} must be <= {len(train)}, the images in {root / 'train'}"
                )
            order = torch.randperm(len(train), generator=seeded_generator(self.seed, SPLIT))
            train = Subset(train, order[: self.train_size].sort().values.tolist())
        self._train, self.num_train = train, len(train)
        self._val = ImageFolder(str(root / "val"), transform=eval_transform())

    @property
    def test_protocol(self) -> str:
        """How the test scores each image, for the summary and the tables."""
        if self.test_scales is not None:
            return "multi-scale " + ",".join(map(str, self.test_scales))
        return "10-crop" if self.test_crops == 10 else "centre crop"

    def _loader(self, dataset: Dataset, argument: str, batch_size: int, train: bool, collate=None) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        workers = self.num_workers > 0
        return DataLoader(
            dataset,
            batch_size=per_rank(argument, batch_size, world),
            shuffle=train,
            drop_last=train,
            generator=seeded_generator(self.seed, SHUFFLE) if train else None,
            num_workers=self.num_workers,
            pin_memory=self.trainer is not None and self.trainer.strategy.root_device.type == "cuda",
            persistent_workers=workers,
            prefetch_factor=4 if workers else None,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._train, "batch_size", self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._val, "eval_batch_size", self.eval_batch_size, train=False)

    def test_repeats_evaluation(self) -> bool:
        """Whether the test pass measures what an evaluation during training measures: with the centre crop, yes (the
        validation set is the test set); 10-crop and multi-scale testing are passes of their own."""
        return self.test_scales is None and self.test_crops == 1

    def test_dataloader(self) -> DataLoader:
        if self.test_repeats_evaluation():
            return self.val_dataloader()
        root = Path(self.root) / "val"
        if self.test_scales is not None:  # whole images of different shapes: one a batch on each rank
            world = self.trainer.world_size if self.trainer is not None else 1
            return self._loader(ImageFolder(str(root), transform=Scales(self.test_scales)), "eval_batch_size", world,
                                train=False, collate=one_image_per_batch)
        return self._loader(ImageFolder(str(root), transform=TenCrops()), "eval_batch_size", self.eval_batch_size,
                            train=False)
