"""A trained run brought back: its network rebuilt from `.hydra/config.yaml` through the builder, the weights of
`checkpoints/last.ckpt` loaded, and its test set as the run's data module serves it (fig7, ensemble)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from resablate.builder import build_datamodule, trained_net
from resablate.records import LAST, RunFolder


def trained_network(run_dir: str, device: str | None = None) -> tuple[nn.Module, Any]:
    """(the run's network with its last weights, in eval mode on `device`; its data module, set up for the test)."""
    run = RunFolder(run_dir)
    if not (run.checkpoints / LAST).exists():  # before its data module, whose construction looks for the data
        raise FileNotFoundError(f"no {(run.checkpoints / LAST).relative_to(run.path)}")
    datamodule = build_datamodule(run.config())
    datamodule.setup("test")
    net, _ = trained_net(run_dir, datamodule)
    net.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return net, datamodule


def eval_batches(datamodule: Any, device: torch.device | str, max_images: int | None = None,
                 loader: Any = None) -> Iterator[tuple]:
    """(x, y) of the test set (or of `loader`, one of the data module's loaders) in order, on `device`, as the network
    sees them (after the data module's batch transform, which augments nothing outside training); x is one tensor, or
    the views of each image under ImageNet's 10-crop and multi-scale testing."""
    seen = 0
    for batch in datamodule.test_dataloader() if loader is None else loader:
        x, y = _to(batch, device)
        if hasattr(datamodule, "on_after_batch_transfer"):
            x, y = datamodule.on_after_batch_transfer((x, y), 0)
        if max_images is not None:
            x, y = (x[: max_images - seen], y[: max_images - seen]) if isinstance(x, torch.Tensor) else (x, y)
        seen += len(y)
        yield x, y
        if max_images is not None and seen >= max_images:
            return


def _to(batch: Any, device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    return batch
