"""The real loaders on small files in the genuine formats, written by the tests: CIFAR-10's pickled python batches
(folder and .tar.gz), Fashion-MNIST's gzipped idx files, an ImageNet ImageFolder tree. What a user would notice: the
pixels and labels that come out are the ones in the files, missing or damaged files are named, and a training run
reads them."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from resablate.data import CIFAR10Data, CorruptDataError, FashionMNISTData, ImageNetData
from tests.conftest import FASHION_MNIST, needs_fashion_mnist, run_app

PER_BATCH = 24  # images in each of CIFAR-10's five training batches and its test batch, here


def cifar_batch(seed: int, n: int = PER_BATCH) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": rng.integers(0, 10, n).tolist(),  # a list of ints, as the published files hold
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),  # 1024 red, 1024 green, 1024 blue per row
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


@pytest.fixture
def cifar_folder(tmp_path):
    """`tmp/cifar-10-batches-py/` holding data_batch_1..5, test_batch and batches.meta, pickled as published."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": cifar_batch(i) for i in range(1, 6)} | {"test_batch": cifar_batch(99)}
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    meta = {b"label_names": [n.encode() for n in names], b"num_vis": 3072, b"num_cases_per_batch": 10000}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path, batches


def expected_cifar(batches: dict, names) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.concatenate([batches[n][b"data"] for n in names])
    labels = sum((batches[n][b"labels"] for n in names), [])
    # a row is the red plane, then green, then blue, each 32 rows of 32 pixels: (N, 3, 32, 32)
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.tensor(labels)


def loaded(dm) -> tuple:
    dm.check()
    dm.setup("fit")
    return dm._train, dm._test


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar.gz"])
def test_cifar10_reads_the_python_batches_pixel_for_pixel(cifar_folder, packed):
    root, batches = cifar_folder
    if packed:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        for f in (root / "cifar-10-batches-py").iterdir():
            f.unlink()
        (root / "cifar-10-batches-py").rmdir()
    dm = CIFAR10Data(root=str(root), download=False, batch_size=16)
    train, test = loaded(dm)
    images, labels = expected_cifar(batches, [f"data_batch_{i}" for i in range(1, 6)])
    assert train.images.dtype == torch.uint8 and train.images.shape == (5 * PER_BATCH, 3, 32, 32)
    assert torch.equal(train.images, images) and torch.equal(train.labels, labels)
    assert torch.equal(test.images, expected_cifar(batches, ["test_batch"])[0])
    assert torch.allclose(dm.mean, images.double().mean(0).div(255).float())  # per-pixel mean of the training images


def test_cifar10_paper_split_holds_out_a_seeded_validation_set(cifar_folder):
    root, batches = cifar_folder
    dm = CIFAR10Data(root=str(root), download=False, batch_size=16, val_size=20, seed=3)
    loaded(dm)
    assert len(dm._val.labels) == 20 and len(dm._train.labels) == 5 * PER_BATCH - 20
    every, _ = expected_cifar(batches, [f"data_batch_{i}" for i in range(1, 6)])
    seen = torch.cat([dm._val.images, dm._train.images]).flatten(1)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, every.flatten(1).tolist()))  # a partition
    again = CIFAR10Data(root=str(root), download=False, batch_size=16, val_size=20, seed=3)
    loaded(again)
    assert torch.equal(again._val.images, dm._val.images)


def test_cifar10_missing_says_where_to_put_the_files(tmp_path):
    dm = CIFAR10Data(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py/.*cifar-10-python.tar.gz.*data.download=true"):
        dm.check()


def test_cifar10_failed_download_says_where_it_looked_and_why(tmp_path):
    """data.download=true (the default) on a machine that cannot reach the URL: one clear error, not a traceback."""
    dm = CIFAR10Data(root=str(tmp_path / "nowhere"), download=True)
    dm.url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # the discard port: refused at once, no network needed
    with pytest.raises(FileNotFoundError) as info:
        dm.check()
    message = str(info.value)
    assert message.startswith(f"CIFAR-10 not found under {(tmp_path / 'nowhere').resolve()}: expected the folder ")
    assert "The download from http://127.0.0.1:9/cifar-10-python.tar.gz failed (" in message
    assert "refused" in message.lower() and "point data.root at a copy" in message


def test_cifar10_partial_folder_names_the_missing_files(cifar_folder):
    root, _ = cifar_folder
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        CIFAR10Data(root=str(root), download=False).check()


def test_cifar10_damaged_batch_is_named(cifar_folder):
    root, _ = cifar_folder
    bad = root / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    dm = CIFAR10Data(root=str(root), download=False, batch_size=16)
    with pytest.raises(CorruptDataError, match="data_batch_2 is not a readable CIFAR-10 batch"):
        loaded(dm)


@pytest.mark.slow
def test_cifar10_training_run_reads_the_archive(cifar_folder):
    """`python -m resablate data=cifar10` on the small archive, as a user runs it."""
    root, _ = cifar_folder
    run_dir = root / "run"
    run_app(["data=cifar10", f"data.root={root}", "data.download=false", "depth=8", "recipe=quick",
             "recipe.batch_size=32", "trainer.max_steps=3", "logger=csv", f"hydra.run.dir={run_dir}"], cwd=root)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["dataset"], summary["status"], summary["steps"]) == ("cifar10", "completed", 3)
    assert 0 <= summary["test_error"] <= 100


# ------------------------------------------------------------------------------------------------------ Fashion-MNIST
def write_idx(path, array: np.ndarray, magic: int) -> None:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


@pytest.fixture
def fashion_folder(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), rng.integers(0, 10, 40, dtype=np.uint8)),
              "t10k": (rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12, dtype=np.uint8))}
    for split, (images, labels) in arrays.items():
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images, 2051)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels, 2049)
    return tmp_path, arrays


def test_fashion_mnist_reads_idx_files_from_root(fashion_folder):
    root, arrays = fashion_folder
    train, test = loaded(FashionMNISTData(root=str(root), download=False, batch_size=8))
    assert train.images.shape == (40, 1, 28, 28)
    assert torch.equal(train.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert torch.equal(test.labels, torch.from_numpy(arrays["t10k"][1]).long())


def test_the_jobs_of_a_sweep_decode_their_files_once(fashion_folder, monkeypatch):
    """A second job in the same process gets the same pixels without decoding again; a changed file is read anew."""
    import resablate.data.fashion_mnist as fm

    root, arrays = fashion_folder
    decodes = []  # full reads only: check() reads the headers of the four files in every job, a few bytes each
    read = fm.read_idx
    monkeypatch.setattr(fm, "read_idx", lambda path, header_only=False: (
        None if header_only else decodes.append(path.name)) or read(path, header_only))
    first, _ = loaded(FashionMNISTData(root=str(root), download=False, batch_size=8, seed=0))
    assert len(decodes) == 4
    second, _ = loaded(FashionMNISTData(root=str(root), download=False, batch_size=8, seed=0))
    assert len(decodes) == 4  # nothing decoded again
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    images = arrays["train"][0].copy()
    images[0] = 255 - images[0]
    write_idx(root / "train-images-idx3-ubyte.gz", images, 2051)
    third, _ = loaded(FashionMNISTData(root=str(root), download=False, batch_size=8, seed=0))
    assert len(decodes) == 8 and torch.equal(third.images[:, 0], torch.from_numpy(images))


def test_fashion_mnist_truncated_file_is_named(fashion_folder):
    root, _ = fashion_folder
    path = root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.gz holds 31260 bytes of data where its header"):
        loaded(FashionMNISTData(root=str(root), download=False, batch_size=8))


def test_fashion_mnist_labels_file_in_place_of_images_is_named(fashion_folder):
    root, _ = fashion_folder
    (root / "t10k-images-idx3-ubyte.gz").write_bytes((root / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(CorruptDataError, match="magic number 2049, not 2051"):
        FashionMNISTData(root=str(root), download=False).check()


def test_fashion_mnist_missing_names_every_place_searched(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Fashion-MNIST not found: searched .*nowhere.*dataset-fashion-mnist"):
        FashionMNISTData(root=str(tmp_path / "nowhere"), download=False).check()


@needs_fashion_mnist
def test_fashion_mnist_from_the_debian_package_by_default():
    dm = FashionMNISTData(download=False, batch_size=128, train_size=1000)
    train, test = loaded(dm)
    assert dm._folder() == FASHION_MNIST
    assert len(train.labels) == 1000 and len(test.labels) == 10_000
    assert set(test.labels.tolist()) == set(range(10))


# ----------------------------------------------------------------------------------------------------------- ImageNet
@pytest.fixture
def imagenet_tree(tmp_path):
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("val", 2)):
        for cls in ("n01440764", "n01443537"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (60 + 10 * i, 80, 3), dtype=np.uint8)  # H x W x RGB, sizes differ
                Image.fromarray(pixels).save(folder / f"{cls}_{i}.JPEG", format="JPEG")
    return tmp_path


def test_imagenet_reads_imagefolder_trees_with_paper_crops(imagenet_tree):
    dm = ImageNetData(root=str(imagenet_tree), batch_size=4, num_workers=0)
    dm.check()
    dm.setup("fit")
    assert dm.num_train == 6 and len(dm._val) == 4
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape == (4, 3, 224, 224) and yv.tolist() == [0, 0, 1, 1]  # in order, centre crops


def test_imagenet_mismatched_class_folders_are_named(imagenet_tree):
    (imagenet_tree / "val" / "n01443537").rename(imagenet_tree / "val" / "n99999999")
    with pytest.raises(CorruptDataError, match="different class folders.*n01443537"):
        ImageNetData(root=str(imagenet_tree), num_workers=0).check()


def test_imagenet_without_val_says_what_is_expected(imagenet_tree):
    import shutil

    shutil.rmtree(imagenet_tree / "val")
    with pytest.raises(FileNotFoundError, match=r"no folder val/.*ImageFolder trees train/<class>"):
        ImageNetData(root=str(imagenet_tree), num_workers=0).check()
