"""Data sets as Lightning data modules, registered under the names of `conf/data/NAME.yaml`.

`DATASETS["cifar10"](root="data", batch_size=128)` works without Hydra. Every module takes the same keyword
arguments (`root`, `download`, `batch_size` (global), `eval_batch_size`, `val_size`, `train_size`, `augment`, `seed`),
exposes `name`, `num_classes`, `in_channels`, `image_size` at once, and `check()`s its files before any training.
CIFAR-10, Fashion-MNIST and synthetic data live whole in memory (`base.py`, augmentation in `augment.py`); ImageNet is
read by DataLoader workers (`imagenet.py`).
"""

from __future__ import annotations

from resablate.data.augment import draw_pad_crop_flip, pad_crop_flip, random_pad_crop_flip
from resablate.data.base import DATASETS, CorruptDataError, InMemoryData, TensorBatches
from resablate.data.cifar10 import CIFAR10Data
from resablate.data.fashion_mnist import FashionMNISTData
from resablate.data.imagenet import ImageNetData
from resablate.data.synthetic import SyntheticData

__all__ = [
    "DATASETS",
    "CIFAR10Data",
    "CorruptDataError",
    "FashionMNISTData",
    "ImageNetData",
    "InMemoryData",
    "SyntheticData",
    "TensorBatches",
    "draw_pad_crop_flip",
    "pad_crop_flip",
    "random_pad_crop_flip",
]

