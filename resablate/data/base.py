"""Small data sets held whole in memory (on the GPU when training on one), and the batches Lightning draws from them.

R1 section 4.2 (CIFAR-10): "The network inputs are 32x32 images, with the per-pixel mean subtracted"; "4 pixels are
padded on each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip. For testing, we
only evaluate the single view of the original 32x32 image"; the schedule is chosen on a 45k/5k train/val split. Here:

- `val_size` holds out that many training images (seeded) as a validation split, evaluated without augmentation;
  `train_size` trains on a fixed seeded subset of what is left. The per-pixel mean is that of the training subset.
- Images stay uint8 (N, C, H, W) and batches are index slices (`TensorBatches`): no worker processes, no per-image
  Python. `on_after_batch_transfer` turns a batch into floats (x / 255 minus the mean image) and, in training, applies
  the pad-crop-flip of `augment.py` on the batch's device. The same augmentation is applied to every in-memory data set
  (Fashion-MNIST included) when `augment=True`; the paper defines it for CIFAR-10 only.
- All randomness is a pure function of the seed and the position in training: the shuffle of epoch e, the crops and
  flips of global batch i of epoch e. A run resumed from a mid-epoch checkpoint sees exactly the batches, crops
  included, of an uninterrupted one, and the global batch does not depend on the number of ranks.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from resablate.data.augment import draw_pad_crop_flip, pad_crop_flip
from resablate.registry import Registry

DATASETS: Registry[type[pl.LightningDataModule]] = Registry("data set")

PAD = 4  # R1 4.2: "4 pixels are padded on each side"
SPLIT, SHUFFLE, AUGMENT, SYNTHETIC = range(4)  # independent random streams drawn from one seed


class CorruptDataError(ValueError):
    """A data file is there but does not hold what its format promises; the message names the file."""


def download_failed(url: str, err: BaseException) -> str:
    """What to do about a data set that is not here and could not be downloaded: why the download failed (offline,
    refused, a bad checksum), in place of the advice to download it."""
    reason = str(getattr(err, "reason", None) or err).strip() or type(err).__name__
    return f"The download from {url} failed ({reason}): put the files there by hand, or point data.root at a copy."


@contextmanager
def downloading_into(folder: Path):
    """A download that fails leaves no folder behind that it made: the empty ones it created are removed, deepest
    first (a folder that was there before, or holds anything, stays)."""
    new = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        yield
    except BaseException:
        for made in new:
            try:
                made.rmdir()
            except OSError:
                break
        raise


class Split(NamedTuple):
    images: Tensor  # (N, C, H, W) uint8
    labels: Tensor  # (N,) int64


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator whose stream is a pure function of the non-negative integers `keys` (NumPy's SeedSequence)."""
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def check_arguments(
    batch_size: int, eval_batch_size: int | None, val_size: int, train_size: int | None, seed: int
) -> None:
    """The checks that need no data: a ValueError naming the argument, its value and what is valid."""
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name}={value!r} must be an integer > 0")
    if not isinstance(val_size, int) or val_size < 0:
        raise ValueError(f"val_size={val_size!r} must be an integer >= 0 (0: no validation split)")
    if train_size is not None and (not isinstance(train_size, int) or train_size <= 0):
        raise ValueError(f"train_size={train_size!r} must be an integer > 0, or null for every training image")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")


def split_sizes(name: str, available: int, val_size: int, train_size: int | None) -> tuple[int, int]:
    """(val, train) image counts taken from `available` training images; a ValueError naming the bad argument."""
    if val_size >= available:
        raise ValueError(f"val_size={val_size} must be < {available}, the number of {name} training images")
    left = available - val_size
    if train_size is not None and train_size > left:
        raise ValueError(
            f"train_size={train_size} must be <= {left}, the {name} training images left after val_size={val_size}"
        )
    return val_size, left if train_size is None else train_size


def per_rank(argument: str, batch_size: int, world_size: int) -> int:
    """The per-rank share of a global batch."""
    if batch_size % world_size:
        raise ValueError(
            f"{argument}={batch_size} must be divisible by the world size {world_size}: it is the global batch, "
            f"split evenly over the ranks"
        )
    return batch_size // world_size


def pixel_mean(images: Tensor, chunk: int = 1024) -> Tensor:
    """The per-pixel mean image (C, H, W) in [0, 1] of uint8 images (N, C, H, W), summed in float64 chunks."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64, device=images.device)
    for start in range(0, len(images), chunk):
        total += images[start : start + chunk].sum(0, dtype=torch.float64)
    return (total / (255.0 * len(images))).float()


class TensorBatches:
    """Batches of (uint8 images, labels) sliced from tensors in memory, sharded over ranks; no workers, no collation.

    `batch_size` is the global batch; each rank yields `batch_size // world_size` images per batch.

    train=True: each epoch is a permutation of the images that is a pure function of (seed, epoch); global batch i is
    `perm[i * batch_size : (i + 1) * batch_size]` and rank r takes the r-th slice of it; the last incomplete batch is
    dropped. Stateful for Lightning's checkpoints (`state_dict`: epoch and batches yielded): a new iterator starts the
    next epoch, except the first one after `load_state_dict`, which continues that epoch where it stopped. `last` is
    (epoch, batch index) of the batch yielded last: the data module seeds its augmentation with it.

    train=False: in order; rank r takes the r-th contiguous share of the images, so over all ranks every image is seen
    exactly once; the last batch may be short.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, batch_size: int, *, train: bool, seed: int = 0, rank: int = 0,
        world_size: int = 1,
    ):
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.local_batch_size = per_rank("batch_size", batch_size, world_size)
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.epoch, self.batch = 0, 0  # the current pass: its epoch and the batches it has yielded
        self.last: tuple[int, int] | None = None
        self._continue = True  # the next pass continues (epoch, batch) instead of starting the next epoch

    def __len__(self) -> int:
        if self.train:
            return len(self.labels) // self.batch_size
        start, stop = self._shard()
        return -(-(stop - start) // self.local_batch_size)

    def __iter__(self):
        return self._train_batches() if self.train else self._eval_batches()

    def _shard(self) -> tuple[int, int]:
        n = len(self.labels)
        return self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size

    def _eval_batches(self):
        start, stop = self._shard()
        for i in range(start, stop, self.local_batch_size):
            j = min(i + self.local_batch_size, stop)
            yield self.images[i:j], self.labels[i:j]

    def _train_batches(self):
        # A generator: nothing below runs until the first batch is asked for, so Lightning's extra iter() calls (one
        # to check that the loader is iterable) start no epoch.
        num_batches = len(self)
        if not self._continue or self.batch >= num_batches:
            self.epoch, self.batch = self.epoch + 1, 0
        self._continue = False
        epoch = self.epoch
        order = torch.randperm(len(self.labels), generator=seeded_generator(self.seed, SHUFFLE, epoch))
        order = order.to(self.images.device)
        for i in range(self.batch, num_batches):
            start = i * self.batch_size + self.rank * self.local_batch_size
            index = order[start : start + self.local_batch_size]
            self.batch, self.last = i + 1, (epoch, i)
            yield self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self._continue = True


_DECODED: dict[tuple, tuple[Split, Split]] = {}  # the data set this process decoded last, by its files


class InMemoryData(pl.LightningDataModule):
    """A data set of uint8 images held whole in memory. Subclasses set `name`, `num_classes`, `in_channels`,
    `image_size`, and implement `check()` (find, download if allowed, verify cheaply) and `_load()` -> (train, test)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int

    def __init__(
        self, root: str | None, download: bool, batch_size: int, eval_batch_size: int | None, val_size: int,
        train_size: int | None, augment: bool, seed: int,
    ):
        super().__init__()
        check_arguments(batch_size, eval_batch_size, val_size, train_size, seed)
        self.root, self.download = root, download
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.val_size, self.train_size, self.augment, self.seed = val_size, train_size, augment, seed
        self.num_train: int | None = None  # known after setup
        self.mean: Tensor | None = None  # per-pixel mean image (C, H, W) of the training subset, after setup
        self._train: Split | None = None
        self._val: Split | None = None
        self._test: Split | None = None
        self._train_batches: TensorBatches | None = None

    def check(self) -> None:
        raise NotImplementedError

    def _load(self) -> tuple[Split, Split]:
        raise NotImplementedError

    def _files(self) -> list[Path] | None:
        """The files `_load` decodes, so that the next job of a sweep in this process recognises them; None: always
        load (data made, not read)."""
        return None

    def _load_once(self) -> tuple[Split, Split]:
        """`_load`, or what it returned for the same files (path, size, modification time) in an earlier job of this
        process: a sweep's jobs decode their data set once (Fashion-MNIST: 0.3 s a job). Only the last data set is
        kept; nothing changes its tensors in place (`setup` indexes subsets into new ones)."""
        files = self._files()
        if files is None:
            return self._load()
        stats = [(str(p.resolve()), p.stat()) for p in files]
        key = (type(self).__name__, *((path, st.st_size, st.st_mtime_ns) for path, st in stats))
        if key not in _DECODED:
            loaded = self._load()
            _DECODED.clear()
            _DECODED[key] = loaded
        return _DECODED[key]

    def prepare_data(self) -> None:
        self.check()  # downloads when allowed and missing; Lightning calls this on one process per node

    def check_contents(self) -> None:
        """Decode the data as `setup` does (which then finds it done) before any Trainer exists: damage inside a
        file, a label out of range or a batch larger than the training set is found before the run starts."""
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            train, self._test = self._load_once()
            val_count, train_count = split_sizes(self.name, len(train.labels), self.val_size, self.train_size)
            order = torch.randperm(len(train.labels), generator=seeded_generator(self.seed, SPLIT))
            if val_count:
                val_index = order[:val_count].sort().values
                self._val = Split(train.images[val_index], train.labels[val_index])
            if train_count < len(train.labels):
                train_index = order[val_count : val_count + train_count].sort().values
                train = Split(train.images[train_index], train.labels[train_index])
            if train_count < self.batch_size:
                raise ValueError(
                    f"batch_size={self.batch_size} must be <= {train_count}, the number of training images "
                    f"(the last incomplete batch is dropped, so no batch would be left)"
                )
            self._train, self.num_train = train, train_count
            self.mean = pixel_mean(train.images)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if device.type == "cuda" and self._train.images.device != device:  # GPU-resident data: moved once
            self._train, self._test = (Split(*(t.to(device) for t in s)) for s in (self._train, self._test))
            self._val = Split(*(t.to(device) for t in self._val)) if self._val is not None else None
            self.mean = self.mean.to(device)

    def _rank_world(self) -> tuple[int, int]:
        # Lightning injects no sampler into an iterable that is not a DataLoader: the batches shard themselves.
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _eval_batches(self, split: Split) -> TensorBatches:
        rank, world = self._rank_world()
        per_rank("eval_batch_size", self.eval_batch_size, world)
        return TensorBatches(*split, self.eval_batch_size, train=False, rank=rank, world_size=world)

    def train_dataloader(self) -> TensorBatches:
        rank, world = self._rank_world()
        per_rank("batch_size", self.batch_size, world)
        self._train_batches = TensorBatches(*self._train, self.batch_size, train=True, seed=self.seed, rank=rank,
                                            world_size=world)
        return self._train_batches

    def val_dataloader(self) -> TensorBatches | list[TensorBatches]:
        """[val, test] with a validation split, else test alone: the trainer names them ("val", "test") or ("test",)."""
        test = self._eval_batches(self._test)
        return [self._eval_batches(self._val), test] if self.val_size else test

    def test_dataloader(self) -> TensorBatches:
        return self._eval_batches(self._test)

    def test_repeats_evaluation(self) -> bool:
        """Whether the test pass measures what an evaluation during training measures (so one at the last step is the
        final test already): here always, as every evaluation includes the test set."""
        return True

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, labels = batch
        x = images.float().div_(255).sub_(self.mean.to(images.device))  # (N, C, H, W) float32, mean-subtracted
        if self.augment and self.trainer is not None and self.trainer.training:
            x = self._augment(x)
        return x, labels

    def _augment(self, x: Tensor) -> Tensor:
        """Pad-crop-flip drawn for the whole global batch from (seed, epoch, batch index); this rank takes its slice."""
        loader = self._train_batches
        epoch, index = loader.last
        offsets_y, offsets_x, flips = draw_pad_crop_flip(
            loader.batch_size, seeded_generator(self.seed, AUGMENT, epoch, index), PAD
        )
        part = slice(loader.rank * loader.local_batch_size, loader.rank * loader.local_batch_size + len(x))
        return pad_crop_flip(x, offsets_y[part], offsets_x[part], flips[part], pad=PAD)
