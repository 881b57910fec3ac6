"""A network's class scores for a test batch, averaged over the views of each image (R1 3.4's testing protocols).

- one view, `(B, C, H, W)`: the softmax of the network's output;
- several views of the same size, `(B, V, C, H, W)` (10-crop testing: the four corners and the centre of the 224 crop,
  and their horizontal flips): the softmax of each view, averaged over the V views;
- a list with one `(B, C, H_s, W_s)` tensor per scale (fully-convolutional multi-scale testing, shorter side s in
  {224, 256, 384, 480, 640}): the softmax at each scale, averaged over the scales. The network pools globally, so it
  takes any size.

Scores are averaged as probabilities ("the scores are averaged", R1 3.4, after Krizhevsky et al.), in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Views = torch.Tensor | Sequence[torch.Tensor]


def class_scores(net: Callable[[torch.Tensor], torch.Tensor], x: Views) -> torch.Tensor:
    """(B, num_classes) probabilities of `x`, averaged over its views or scales (see the module)."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("class_scores: no scales in the batch")
        return torch.stack([class_scores(net, scale) for scale in x]).mean(0)
    if x.dim() == 5:
        batch, views = x.shape[:2]
        return class_scores(net, x.flatten(0, 1)).view(batch, views, -1).mean(1)
    return net(x).float().softmax(-1)
