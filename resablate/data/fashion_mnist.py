"""Fashion-MNIST (Xiao et al. 2017): 60k training and 10k test images, 28x28 grey, 10 classes. Not in R1: the quick,
CPU-sized stand-in task of this project, trained with the CIFAR-10 recipe of R1 section 4.2 (per-pixel mean, pad 4,
random 28x28 crop, horizontal flip; see `base.py`).

The four idx files (`train-images-idx3-ubyte.gz`, ...) are parsed with gzip and NumPy, checking their magic numbers
(2051 for images, 2049 for labels) and sizes. Searched in `root` when given (the four files flat, or torchvision's
`FashionMNIST/raw/` layout under it), else in `/usr/share/datasets/fashion-mnist/` (Debian's dataset-fashion-mnist),
else in `data/`; downloaded into `<root or data>/FashionMNIST/raw/` when `download=True` and found nowhere.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from math import prod
from pathlib import Path

import numpy as np
import torch

from resablate.data.base import (
    DATASETS,
    CorruptDataError,
    InMemoryData,
    Split,
    download_failed,
    downloading_into,
    split_sizes,
)

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
RAW = Path("FashionMNIST", "raw")
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {  # name: (idx magic number, MD5 of the published file)
    "train-images-idx3-ubyte.gz": (2051, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": (2049, "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": (2051, "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": (2049, "bb300cfdad3c16e7a12a480ee83cd310"),
}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path, header_only: bool = False) -> tuple[tuple[int, ...], np.ndarray | None]:
    """(dims, uint8 array of those dims) of a gzipped idx file; CorruptDataError naming the file when it is not one."""
    magic = FILES[path.name][0]
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
            found = int.from_bytes(head, "big") if len(head) == 4 else None
            ndim = magic & 0xFF  # the magic's last byte counts the dimensions; 0x08 before it: unsigned bytes
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim)) if found == magic else ()
            data = f.read() if found == magic and not header_only else b""
    except (OSError, EOFError, zlib.error, struct.error) as err:
        raise CorruptDataError(f"{path} is not a readable gzipped idx file ({type(err).__name__}: {err})") from None
    if found != magic:
        raise CorruptDataError(f"{path} starts with idx magic number {found}, not {magic}: not a {path.name} file")
    if dims[1:] not in ((), (28, 28)):
        raise CorruptDataError(f"{path} holds {' x '.join(map(str, dims))} images, where Fashion-MNIST has 28 x 28")
    if header_only:
        # gzip's last 4 bytes hold the uncompressed size (mod 2^32): a cut-off file ends elsewhere, in compressed data
        with open(path, "rb") as f:
            f.seek(-4, 2)
            size = int.from_bytes(f.read(4), "little")
        header, promised = 4 + 4 * len(dims), prod(dims)
        if size != (header + promised) % 2**32:
            if header <= size < header + promised:  # a whole gzip stream of too little data
                raise CorruptDataError(f"{path} holds {size - header} bytes of data where its header promises "
                                       f"{promised}")
            raise CorruptDataError(f"{path} is truncated or damaged: its gzip trailer does not match its idx header")
        return dims, None
    if len(data) != prod(dims):
        raise CorruptDataError(f"{path} holds {len(data)} bytes of data where its header promises {prod(dims)}")
    return dims, np.frombuffer(data, dtype=np.uint8).reshape(dims)


@DATASETS.register("fashion_mnist")
class FashionMNISTData(InMemoryData):
    """Fashion-MNIST from `root`, else /usr/share/datasets/fashion-mnist/, else data/ (downloaded there if allowed)."""

    name = "fashion_mnist"
    mirror = MIRROR  # where missing files are downloaded from when data.download=true
    num_classes = 10
    in_channels = 1
    image_size = 28

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
    ):
        super().__init__(root, download, batch_size, eval_batch_size, val_size, train_size, augment, seed)
        base = Path("data" if root is None else root)
        self.searched = [base, base / RAW] if root is not None else [SYSTEM_DIR, base, base / RAW]
        self.download_dir = base / RAW

    def _folder(self) -> Path | None:
        return next((d for d in self.searched if all((d / name).is_file() for name in FILES)), None)

    def _download(self) -> None:
        from torchvision.datasets.utils import download_url

        for name, (_, md5) in FILES.items():
            if not (self.download_dir / name).is_file():
                download_url(self.mirror + name, str(self.download_dir), filename=name, md5=md5)

    def _missing(self, advice: str | None = None) -> str:
        """Every place searched, then `advice` (default: the Debian package, where to put the files, or download)."""
        advice = advice or (f"Install the Debian package dataset-fashion-mnist (files in {SYSTEM_DIR}/), put the four "
                            f"files from https://github.com/zalandoresearch/fashion-mnist under data.root, or set "
                            f"data.download=true on a machine that is online.")
        return (
            f"Fashion-MNIST not found: searched {', '.join(str(d.resolve()) for d in self.searched)} for "
            f"{', '.join(FILES)} (flat, or under {RAW}/ as torchvision stores them). {advice}"
        )

    def check(self) -> None:
        folder = self._folder()
        if folder is None and self.download:
            try:
                with downloading_into(self.download_dir):
                    self._download()
            except (OSError, RuntimeError) as err:  # offline (URLError is an OSError), refused, or a bad checksum
                raise FileNotFoundError(self._missing(download_failed(self.mirror, err))) from None
            folder = self._folder()
        if folder is None:
            raise FileNotFoundError(self._missing())
        counts = {}
        for split, (images, labels) in SPLITS.items():  # headers only: a few bytes of each file
            (n, *_), _ = read_idx(folder / images, header_only=True)
            (m,), _ = read_idx(folder / labels, header_only=True)
            if n != m:
                raise CorruptDataError(f"{folder / images} holds {n} images but {folder / labels} {m} labels")
            counts[split] = n
        split_sizes(self.name, counts["train"], self.val_size, self.train_size)

    def _files(self) -> list[Path] | None:
        folder = self._folder()
        return None if folder is None else [folder / name for name in FILES]

    def _load(self) -> tuple[Split, Split]:
        folder = self._folder()
        if folder is None:
            raise FileNotFoundError(self._missing())
        splits = []
        for images, labels in SPLITS.values():
            _, x = read_idx(folder / images)  # (N, 28, 28)
            _, y = read_idx(folder / labels)  # (N,)
            if len(x) != len(y):
                raise CorruptDataError(f"{folder / images} holds {len(x)} images but {folder / labels} {len(y)} labels")
            if y.size and y.max() >= self.num_classes:
                raise CorruptDataError(f"{folder / labels} has labels outside 0..{self.num_classes - 1}")
            splits.append(Split(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))))
        return splits[0], splits[1]
