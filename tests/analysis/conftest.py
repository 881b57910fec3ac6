"""Fixture run folders in the format resablate/app/train.py writes: summary.json, metrics.csv, .hydra/config.yaml.

`zoo` holds mixed sweeps: CIFAR-family plain and ResNet runs on cifar10 (three seeds of ResNet-20, a failed plain-56,
a ResNet-56 with no metrics.csv, a ResNet-110 folder with a config but no summary), a diverged plain-110, a ResNet-20 on
fashion_mnist, and ImageNet-family 18-layer nets on fashion_mnist.
`trained` is a real sweep made by `python -m resablate -m`: plain-8 and ResNet-8 trained for a few steps on synthetic
images, with the checkpoints fig7 measures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PARAMS = {20: 269_722, 56: 853_018, 110: 1_727_962, 18: 11_177_538}
MACS = {20: 40_800_000, 56: 125_500_000, 110: 253_000_000, 18: 556_000_000}
COLUMNS = ["step", "epoch", "lr", "test/err", "test/loss", "train/err", "train/ips", "train/loss"]


def write_run(folder: Path, *, depth: int, shortcut: str, seed: int = 0, test_error: float | None = None,
              status: str = "completed", dataset: str = "cifar10", family: str = "cifar", block: str = "basic",
              recipe: str = "cifar_paper", max_steps: int = 64000, metrics: bool = True, **extra) -> Path:
    """One run folder; the curves decay from 90 % to the final errors with R1's two LR drops at 50 % and 75 %."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = extra.pop("steps", max_steps)
    final_train = (test_error if test_error is not None else 10.0) - 3.0
    summary = {
        "depth": depth, "family": family, "block": block, "shortcut": shortcut,
        "stage_depths": [(depth - 2) // 6] * 3 if family == "cifar" else [2, 2, 2, 2],
        "widths": [16, 32, 64] if family == "cifar" else [64, 128, 256, 512], "dataset": dataset, "recipe": recipe,
        "seed": seed, "params": PARAMS.get(depth, 1000 * depth), "macs": MACS.get(depth, 2_000_000 * depth),
        "overrides": f"depth={depth} shortcut={shortcut} seed={seed}", "world_size": 1, "num_nodes": 1,
        "global_batch": 128, "precision": "32-true", "max_steps": max_steps, "status": status, "steps": steps,
        "train_error": final_train, "train_loss": 0.1, "val_error": None,
        "test_error": test_error if status == "completed" else None, "wall_seconds": 100.0,
        "images_per_second": 5000.0, "wandb_id": None, **extra,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if metrics:
        write_metrics(folder, steps, max_steps, final_train, test_error if test_error is not None else 60.0, seed)
    return folder


def write_metrics(folder: Path, steps: int, max_steps: int, final_train: float, final_test: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    log, evaluate = max(max_steps // 320, 1), max(max_steps // 32, 1)

    def error(t: int, final: float) -> float:
        floor = final + (6.0 if t < max_steps / 2 else 1.5 if t < 0.75 * max_steps else 0.0)
        return floor + (90.0 - floor) * math.exp(-t / (0.04 * max_steps))

    rows = []
    for step in range(log, steps + 1, log):
        row = {"step": step, "epoch": step * 128 // 50000, "lr": 0.1, "train/ips": 5000.0,
               "train/err": error(step, final_train) + rng.normal(0, 0.3), "train/loss": 0.5}
        if step % evaluate == 0:
            row.update({"test/err": error(step, final_test) + rng.normal(0, 0.5), "test/loss": 0.6})
        rows.append(row)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "metrics.csv", index=False)


def write_config(folder: Path, overrides: list[str]) -> None:
    """The composed config, as Hydra writes it to .hydra/config.yaml."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_app

    cfg = compose_app(overrides)
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")


# ResNet-20 on cifar10: three seeds; table6 statistics are computed by hand from these in the tests.
RESNET20_ERRORS = [8.5, 8.9, 8.3]
RESNET56_ERRORS = [7.1, 6.9]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    sweep = root / "multirun" / "shortcut=none,zero_pad_depth=20,56,110_seed=0,1,2"
    write_run(sweep / "0", depth=20, shortcut="none", test_error=9.6)
    write_run(sweep / "1", depth=56, shortcut="none", test_error=13.2)
    write_run(sweep / "2", depth=56, shortcut="none", seed=1, status="failed", steps=1200,
              error="RuntimeError: CUDA error: an illegal memory access")
    for i, err in enumerate(RESNET20_ERRORS):
        write_run(sweep / str(3 + i), depth=20, shortcut="zero_pad", seed=i, test_error=err)
    write_run(sweep / "6", depth=56, shortcut="zero_pad", test_error=RESNET56_ERRORS[0])
    write_run(sweep / "7", depth=56, shortcut="zero_pad", seed=1, test_error=RESNET56_ERRORS[1], metrics=False)
    write_config(sweep / "8", ["depth=110", "shortcut=zero_pad", "seed=0"])  # killed before its summary: missing
    write_run(root / "outputs" / "depth=110,shortcut=none", depth=110, shortcut="none", status="diverged", steps=900,
              diverged_at=900)
    write_run(root / "outputs" / "data=fashion_mnist,depth=20", depth=20, shortcut="zero_pad", dataset="fashion_mnist",
              recipe="quick", max_steps=1000, test_error=7.8)
    imagenet = root / "multirun" / "data=fashion_mnist,family=imagenet_depth=18_shortcut=none,zero_pad"
    for i, shortcut in enumerate(("none", "zero_pad")):
        write_run(imagenet / str(i), depth=18, shortcut=shortcut, family="imagenet", dataset="fashion_mnist",
                  recipe="quick", max_steps=1000, test_error=8.6 if shortcut == "none" else 8.1)
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A real two-job sweep (plain-8, ResNet-8; 3 steps on 128 synthetic images): run folders as the app writes them."""
    from tests.conftest import run_app

    root = tmp_path_factory.mktemp("trained")
    sweep = root / "multirun" / "fig7"
    run_app(["-m", "data=synthetic", "data.num_samples=128", "depth=8", "shortcut=none,zero_pad", "recipe=quick",
             "recipe.batch_size=32", "trainer.max_steps=3", "trainer.log_every_n_steps=1", "logger=csv",
             f"hydra.sweep.dir={sweep}"], cwd=root)
    return sweep
