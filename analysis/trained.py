"""A trained run brought back: its network rebuilt from `.hydra/config.yaml` through the builder, the weights of
`checkpoints/last.ckpt` loaded, and its test set as the run's data module serves it (fig7, ensemble)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from resablate.builder import build_datamodule, build_net
from resablate.records import LAST, RunFolder, load_checkpoint


def trained_network(run_dir: str, device: str | None = None) -> tuple[nn.Module, Any]:
    """(the run's network with its last weights, in eval mode on `device`; its data module, set up for the test)."""
    run = RunFolder(run_dir)
    ckpt = run.checkpoints / LAST
    if not ckpt.exists():
        raise FileNotFoundError(f"no {ckpt.relative_to(run.path)}")
    cfg = run.config()
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    net = build_net(cfg, datamodule)
    state = load_checkpoint(ckpt)["state_dict"]
    # keys are the network's prefixed by "net." (and "_orig_mod." under torch.compile)
    weights = {k.removeprefix("net.").replace("_orig_mod.", ""): v for k, v in state.items() if k.startswith("net.")}
    net.load_state_dict(weights)
    net.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return net, datamodule


def eval_batches(datamodule: Any, device: torch.device | str, max_images: int | None = None) -> Iterator[tuple]:
    """(x, y) of the test set in order, on `device`, as the network sees them (after the data module's batch
    transform); x is one tensor, or the views of each image under ImageNet's 10-crop and multi-scale testing."""
    seen = 0
    for batch in datamodule.test_dataloader():
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
