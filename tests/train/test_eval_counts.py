"""Evaluation counts are exact under bf16-mixed: errors and sample counts are summed in float32, never in the logits'
dtype (bf16 holds integers exactly only up to 256, so an eval batch of 600 would count 289 errors as 288)."""

import torch
from torch import nn

from resablate.app.module import ResNetModule

RECIPE = {"lr": 0.1, "schedule": "cosine", "max_steps": 10, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False}


def test_bf16_logits_count_errors_and_samples_exactly():
    module = ResNetModule(nn.Identity(), RECIPE, total_steps=10, warmup=False, top5=True)
    n, classes, wrong = 600, 100, 289
    labels = torch.arange(n) % classes
    predicted = torch.where(torch.arange(n) < wrong, (labels + 1) % classes, labels)
    logits = nn.functional.one_hot(predicted, classes).to(torch.bfloat16)  # the identity "net" returns bf16 logits
    # top-5 misses: the label is outside the 5 highest logits for the first `wrong` images only when it scores lowest
    logits[:wrong] -= nn.functional.one_hot(labels[:wrong], classes).to(torch.bfloat16)
    module._eval_step((logits, labels), dataloader_idx=0)
    loss_sum, errors, errors5, samples = module._eval[0].tolist()
    assert (errors, errors5, samples) == (289.0, 289.0, 600.0)
    assert module._eval[0].dtype == torch.float32
