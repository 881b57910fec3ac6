"""A run resumed by Lightning from a checkpoint sees exactly the batches (augmentation included) and ends with exactly
the weights of an uninterrupted run: the train loader's state travels in the checkpoint (FitLoop.on_save_checkpoint
stores `state_dict()` of every `_Stateful` loader under loops.fit_loop.state_dict.combined_loader)."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from resablate.data import SyntheticData

STEPS = 12
SAVE_AT = {5: {"epoch": 0, "batch": 5}, 7: {"epoch": 1, "batch": 2}}  # 5 batches per epoch: at its end, in the next


class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3 * 8 * 8, 4)
        self.seen = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append((x.clone(), y.clone()))
        return F.cross_entropy(self.net(x.flatten(1)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class SaveAt(pl.Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step in SAVE_AT:
            trainer.save_checkpoint(self.folder / f"step{trainer.global_step}.ckpt")


def fit(callbacks=(), ckpt_path=None):
    pl.seed_everything(0, verbose=False)
    model = Recorder()
    dm = SyntheticData(num_samples=40, image_size=8, num_classes=4, batch_size=8, seed=1)
    trainer = pl.Trainer(max_steps=STEPS, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=list(callbacks))
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    return fit([SaveAt(folder)]), folder


@pytest.mark.parametrize("step,loader_state", SAVE_AT.items())
def test_resumed_run_sees_the_same_batches_and_ends_with_the_same_weights(uninterrupted, step, loader_state):
    full, folder = uninterrupted
    assert len(full.seen) == STEPS
    assert not torch.equal(full.seen[7][1], full.seen[2][1])  # epochs differ: resuming at the wrong place would show
    state = torch.load(folder / f"step{step}.ckpt", weights_only=False)["loops"]["fit_loop"]["state_dict"]
    assert state["combined_loader"] == [loader_state]
    resumed = fit(ckpt_path=folder / f"step{step}.ckpt")
    assert len(resumed.seen) == STEPS - step
    for (x, y), (x_full, y_full) in zip(resumed.seen, full.seen[step:], strict=True):
        assert torch.equal(y, y_full) and torch.equal(x, x_full)
    for p, p_full in zip(resumed.parameters(), full.parameters(), strict=True):
        assert torch.equal(p, p_full)
