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


def test_cudnn_autotuning_is_off_during_a_multi_scale_test_only():
    """data.test_scales makes nearly every test image a new shape: cuDNN must not re-tune for each (a real Lightning
    test, on a CPU, with the flag read inside test_step)."""
    import pytorch_lightning as pl

    seen = []

    class Scales(pl.LightningDataModule):
        def __init__(self, test_scales):
            super().__init__()
            self.test_scales = test_scales

        def test_dataloader(self):
            data = torch.utils.data.TensorDataset(torch.randn(2, 4), torch.tensor([0, 1]))
            return torch.utils.data.DataLoader(data, batch_size=2)

    class Watched(ResNetModule):
        def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
            seen.append(torch.backends.cudnn.benchmark)
            return super().test_step(batch, batch_idx, dataloader_idx)

    before = torch.backends.cudnn.benchmark
    try:
        for scales in ([224, 256, 384], None):
            torch.backends.cudnn.benchmark = True  # as trainer.py sets it for a non-deterministic run
            trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False)
            trainer.test(Watched(nn.Linear(4, 2), RECIPE, total_steps=10, warmup=False), datamodule=Scales(scales),
                         verbose=False)
            assert torch.backends.cudnn.benchmark is True  # back on after the test
        assert seen == [False, True]
    finally:
        torch.backends.cudnn.benchmark = before
