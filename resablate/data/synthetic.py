"""Random images with random labels, for tests and benchmarks only: nothing to learn beyond memorising, never a result.

`num_samples` training images and `num_samples // 5` (at least 1) test images, uint8 of shape
(in_channels, image_size, image_size), drawn from `seed`. Same batching, splits, mean subtraction and augmentation as
the real in-memory data sets (`base.py`).
"""

from __future__ import annotations

import torch

from resablate.data.base import DATASETS, SYNTHETIC, InMemoryData, Split, seeded_generator, split_sizes


@DATASETS.register("synthetic")
class SyntheticData(InMemoryData):
    """Seeded random uint8 images and labels; `root` and `download` are accepted for a uniform config and unused."""

    name = "synthetic"

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
        num_samples: int = 1024,
        image_size: int = 32,
        in_channels: int = 3,
        num_classes: int = 10,
    ):
        super().__init__(root, download, batch_size, eval_batch_size, val_size, train_size, augment, seed)
        for name, value in (("num_samples", num_samples), ("image_size", image_size), ("in_channels", in_channels),
                            ("num_classes", num_classes)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be an integer > 0")
        split_sizes(self.name, num_samples, val_size, train_size)
        self.num_samples, self.image_size, self.in_channels, self.num_classes = (
            num_samples, image_size, in_channels, num_classes
        )

    def check(self) -> None:
        """Nothing to find: the images are drawn in `setup`."""

    def _load(self) -> tuple[Split, Split]:
        generator = seeded_generator(self.seed, SYNTHETIC)
        shape = (self.in_channels, self.image_size, self.image_size)

        def draw(n: int) -> Split:
            images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)
            return Split(images, torch.randint(0, self.num_classes, (n,), generator=generator))

        return draw(self.num_samples), draw(max(1, self.num_samples // 5))
