"""R1 Fig. 7: standard deviation of each 3x3 layer's response, after BN and before ReLU or the addition (R1 4.2).

For each completed run with `checkpoints/last.ckpt`, the network is rebuilt from its composed config, its weights
loaded, and up to `--max-images` test images run through it in eval mode. A response layer is a BatchNorm2d whose input
is the output of a 3x3 convolution: the stem's BN, bn1/bn2 of a basic block, bn2 of a bottleneck (pre-activation
blocks: the BN that follows a 3x3 conv). Its std is over every value it outputs: all images, channels and positions.
Top panel: std by layer index (network order); bottom panel: the same values sorted in descending order. One line per
architecture, the mean over its seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from torch import nn

from .output import Artifact, empty_panel, save_figure, write_csv
from .paper import PAPER_DATASET
from .runs import PLAIN, Runs, describe, display_path, method_label, pick_dataset, pick_recipe
from .trained import eval_batches, trained_network

DEFAULT_MAX_IMAGES = 2000


def layer_response_std(net: nn.Module, batches: Iterable) -> list[float]:
    """Std of each 3x3 conv's BN output, in network order, over all `batches` (tensors or (x, y) pairs), eval mode."""
    last_conv_output: list[torch.Tensor | None] = [None]
    sums: dict[nn.Module, list[float]] = {}  # BN -> [sum, sum of squares, count], in the order first seen

    def after_conv(module, inputs, output):
        last_conv_output[0] = output

    def after_bn(module, inputs, output):
        if inputs[0] is last_conv_output[0]:  # this BN normalises a 3x3 conv's output directly
            v = output.detach().double()
            acc = sums.setdefault(module, [0.0, 0.0, 0])
            acc[0] += v.sum().item()
            acc[1] += v.square().sum().item()
            acc[2] += v.numel()

    hooks = [m.register_forward_hook(after_conv) for m in net.modules()
             if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (3, 3)]
    hooks += [m.register_forward_hook(after_bn) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = net.training
    device = next(net.parameters()).device
    net.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                net(x.to(device))
                last_conv_output[0] = None
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return [math.sqrt(max(sq / n - (s / n) ** 2, 0.0)) for s, sq, n in sums.values()]


def run_layer_stds(run_dir: str, max_images: int = DEFAULT_MAX_IMAGES, device: str | None = None) -> list[float]:
    """Rebuild a run's network and test data from `.hydra/config.yaml`, load last.ckpt, and measure its responses."""
    net, datamodule = trained_network(run_dir, device)
    device = next(net.parameters()).device
    return layer_response_std(net, (x for x, _ in eval_batches(datamodule, device, max_images)))


def fig7(runs: Runs, out: Path, dataset: str | None = None, recipe: str | None = None,
         max_images: int = DEFAULT_MAX_IMAGES, **_) -> Artifact:
    art = Artifact("fig7", "R1 Fig. 7: std of 3x3 layer responses", "figure")
    frame = runs.completed[runs.completed.family == "cifar"]
    chosen, art.notes = pick_dataset(frame, PAPER_DATASET["fig7"], dataset)
    frame = frame[frame.dataset == chosen] if chosen is not None else frame.iloc[0:0]
    frame, recipe_notes = pick_recipe(frame, recipe)  # seeds are averaged: one schedule only
    art.notes += recipe_notes
    results, rows = {}, []
    for _, r in frame.iterrows():
        label = method_label(r.shortcut, r.depth, r.block)
        try:
            stds = run_layer_stds(r.run_dir, max_images)
        except Exception as err:  # no checkpoint, no data here, a config of another version: say which and why
            art.notes.append(f"{display_path(r.run_dir)}: not measured ({type(err).__name__}: {err})")
            continue
        results.setdefault((r.shortcut != PLAIN, int(r.depth), label), []).append(stds)
        art.runs.append(r.run_dir)
        rows += [{"label": label, "run_dir": display_path(r.run_dir), "layer": i + 1, "std": s}
                 for i, s in enumerate(stds)]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7))
    colours = sns.color_palette("tab10", max(len(results), 1))
    for colour, (key, lists) in zip(colours, sorted(results.items()), strict=False):
        mean = pd.DataFrame(lists).mean().to_numpy()  # over seeds, layer by layer
        label = key[2] + (f" (n={len(lists)})" if len(lists) > 1 else "")
        layers = range(1, len(mean) + 1)
        top.plot(layers, mean, "-", color=colour, lw=1.4, label=label)
        bottom.plot(layers, sorted(mean, reverse=True), "-", color=colour, lw=1.4, label=label)
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        if results:
            ax.legend(fontsize=8, loc="upper right")
        else:
            empty_panel(ax, "no completed CIFAR-family runs with a checkpoint to measure")
    fig.suptitle(f"{art.title} (after BN, before ReLU/addition) — {chosen or 'no runs'}, "
                 f"up to {max_images} test images", fontsize=10)
    fig.tight_layout()
    not_done = runs.frame[(runs.frame.status != "completed") & (runs.frame.family == "cifar")]
    if chosen is not None:
        not_done = not_done[not_done.dataset == chosen]
    if len(not_done):
        art.notes.append("Not completed, not measured: " + "; ".join(describe(r) for _, r in not_done.iterrows()))
    if rows:
        write_csv(pd.DataFrame(rows), art, out, "fig7.csv")
    return save_figure(fig, art, out)
