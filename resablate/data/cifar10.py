"""CIFAR-10 (R1 section 4.2): 50k training and 10k test images, 32x32 RGB, 10 classes.

Read from the python version's pickle batches (`data_batch_1`..`data_batch_5`, `test_batch`, `batches.meta`: dicts with
b'data', uint8 N x 3072 rows of 1024 red, 1024 green, 1024 blue values, and b'labels'), either in
`<root>/cifar-10-batches-py/` or straight from the members of `<root>/cifar-10-python.tar.gz` (read in one pass, never
extracted). Downloaded with torchvision when `download=True` and neither is there. `val_size=5000` gives the paper's
45k/5k split; per-pixel mean and pad-crop-flip augmentation are in `base.py`. The batches are pickles, as published:
unpickling runs whatever a file says, so only point `root` at copies you trust.
"""

from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from resablate.data.base import DATASETS, CorruptDataError, InMemoryData, Split, download_failed, downloading_into

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
FILES = (*TRAIN_BATCHES, TEST_BATCH, META)


def read_batch(raw: bytes, where: str) -> Split:
    """One pickled batch -> uint8 images (N, 3, 32, 32) and int64 labels; CorruptDataError naming `where` otherwise."""
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except Exception as err:  # a damaged pickle can fail in many ways (UnpicklingError, EOFError, ValueError, ...)
        raise CorruptDataError(f"{where} is not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise CorruptDataError(f"{where} has no b'data' array of uint8 N x 3072 as a CIFAR-10 batch must")
    if labels is None or len(labels) != len(data):
        raise CorruptDataError(f"{where} has {len(data)} images but not as many b'labels'")
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < 10:
        raise CorruptDataError(f"{where} has labels outside 0..9")
    return Split(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), labels)


def read_meta(raw: bytes, where: str) -> list[str]:
    try:
        names = pickle.loads(raw, encoding="bytes")[b"label_names"]
    except Exception as err:  # see read_batch
        raise CorruptDataError(
            f"{where} is not a readable CIFAR-10 batches.meta ({type(err).__name__}: {err})"
        ) from None
    if len(names) != 10:
        raise CorruptDataError(f"{where} names {len(names)} classes where CIFAR-10 has 10")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_archive(archive: Path, read: bool) -> dict[str, bytes]:
    """{file name: its bytes (b"" unless `read`)} for the CIFAR-10 files in the .tar.gz, in one pass over it."""
    wanted = {f"{FOLDER}/{name}": name for name in FILES}
    members = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name in wanted:
                    members[wanted[member.name]] = tar.extractfile(member).read() if read else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise CorruptDataError(f"{archive} is not a readable .tar.gz archive ({type(err).__name__}: {err})") from None
    lacking = [name for name in wanted if wanted[name] not in members]
    if lacking:
        raise CorruptDataError(f"{archive} lacks {', '.join(lacking)}")
    return members


@DATASETS.register("cifar10")
class CIFAR10Data(InMemoryData):
    """CIFAR-10 from `<root>/cifar-10-batches-py/` or `<root>/cifar-10-python.tar.gz`; `root` defaults to `data`."""

    name = "cifar10"
    url = URL  # where a missing copy is downloaded from when data.download=true
    num_classes = 10
    in_channels = 3
    image_size = 32

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
        self.path = Path("data" if root is None else root)

    def _source(self) -> Path | None:
        folder = self.path / FOLDER
        if all((folder / name).is_file() for name in FILES):
            return folder
        archive = self.path / ARCHIVE
        return archive if archive.is_file() else None

    def _missing(self, advice: str | None = None) -> str:
        """Where CIFAR-10 was looked for, then `advice` (default: where to put it, or to download it)."""
        folder = self.path / FOLDER
        lacking = [name for name in FILES if not (folder / name).is_file()] if folder.is_dir() else []
        partial = f" ({FOLDER}/ is there but lacks {', '.join(lacking)})" if lacking else ""
        advice = advice or (f"Put either under {self.path.resolve()} (python version, {URL}), or set "
                            f"data.download=true on a machine that is online.")
        return (
            f"CIFAR-10 not found under {self.path.resolve()}: expected the folder {FOLDER}/ holding "
            f"{', '.join(FILES)}, or the archive {ARCHIVE}, there{partial}. {advice}"
        )

    def check(self) -> None:
        source = self._source()
        if source is None and self.download:
            from torchvision.datasets.utils import download_and_extract_archive

            try:
                with downloading_into(self.path):
                    download_and_extract_archive(self.url, str(self.path), filename=ARCHIVE, md5=ARCHIVE_MD5)
            except (OSError, RuntimeError) as err:  # offline (URLError is an OSError), refused, or a bad checksum
                raise FileNotFoundError(self._missing(download_failed(self.url, err))) from None
            source = self._source()
        if source is None:
            raise FileNotFoundError(self._missing())
        if source.is_dir():
            for name in FILES:
                if (source / name).stat().st_size == 0:
                    raise CorruptDataError(f"{source / name} is empty")
                with open(source / name, "rb") as f:  # a pickle ends with its STOP opcode: a cut-off file does not
                    f.seek(-1, 2)
                    if f.read(1) != pickle.STOP:
                        raise CorruptDataError(f"{source / name} is not a readable CIFAR-10 batch (truncated: it does "
                                               f"not end with pickle's STOP byte)")
            read_meta((source / META).read_bytes(), str(source / META))
        else:
            read_archive(source, read=False)  # lists the members: decompresses, keeps nothing

    def _files(self) -> list[Path] | None:
        source = self._source()
        return None if source is None else [source / name for name in FILES] if source.is_dir() else [source]

    def _load(self) -> tuple[Split, Split]:
        source = self._source()
        if source is None:
            raise FileNotFoundError(self._missing())
        if source.is_dir():
            raw = {name: ((source / name).read_bytes(), str(source / name)) for name in FILES}
        else:
            raw = {name: (data, f"{source}:{FOLDER}/{name}") for name, data in read_archive(source, read=True).items()}
        read_meta(*raw[META])
        batches = [read_batch(*raw[name]) for name in TRAIN_BATCHES]
        train = Split(torch.cat([b.images for b in batches]), torch.cat([b.labels for b in batches]))
        return train, read_batch(*raw[TEST_BATCH])
