"""The Lightning module: R1's training objective and schedules, with the paper's metrics.

- Cross-entropy; top-1 error in % (`train/err`, `val/err`, `test/err`) and top-5 for 100+ classes (`*/err5`).
- The learning rate is a pure function of the iteration (R1 4.2: /10 at 32k and 48k of 64k; `cosine`, `linear` for short
  recipes). When `trainer.max_steps` shortens a recipe, its milestones shrink in proportion.
- Warm-up (R1 4.2, ResNet-110): LR `warmup_lr` until the training error is below `warmup_until_error` %, for at most
  `warmup_steps` iterations. `warmup=linear` (short recipes) instead raises the LR linearly from `warmup_lr` to `lr`
  over the first `warmup_steps` iterations (shrunk in proportion like the milestones); the cosine or linear decay then
  runs over the iterations left.
- Training loss and error are summed on the device and read back once per `log_every` steps (no per-step sync); the same
  read-back checks for a non-finite loss, which stops the run as diverged.
"""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from resablate.builder import build_optimizer
from resablate.models.scoring import class_scores


def linear_warmup_steps(recipe: dict, total_steps: int) -> int:
    """Iterations of a `warmup=linear` ramp in a run of `total_steps` (0 without one): `warmup_steps` of the recipe's
    `max_steps`, in proportion when trainer.max_steps shortens or lengthens it."""
    if recipe.get("warmup") != "linear":
        return 0
    return min(round(recipe["warmup_steps"] * total_steps / recipe["max_steps"]), total_steps)


def lr_at(step: int, recipe: dict, total_steps: int) -> float:
    """Scheduled learning rate at iteration `step` (R1's constant warm-up aside)."""
    base, schedule = recipe["lr"], recipe["schedule"]
    ramp = linear_warmup_steps(recipe, total_steps)
    if step < ramp:
        return recipe["warmup_lr"] + (base - recipe["warmup_lr"]) * step / ramp
    if schedule == "step":
        scale = total_steps / recipe["max_steps"]
        passed = sum(step >= m * scale for m in recipe["milestones"])
        return base * recipe["gamma"] ** passed
    progress = min((step - ramp) / max(total_steps - ramp, 1), 1.0)
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * progress))
    return base * (1 - progress)


class ResNetModule(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        recipe: dict,
        total_steps: int,
        warmup: bool,
        log_every: int = 50,
        eval_names: tuple[str, ...] = ("test",),
        top5: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        # compile=true compiles the training step's forward only, once: its batches all have one shape (the last
        # incomplete one is dropped) and the net is always in train mode. Evaluation runs eagerly: eval mode, the
        # partial last batches and the test under inference_mode would each compile the net again. Kept out of the
        # module's children (in __dict__), so checkpoints keep the keys `net.*` with or without compile, and a run
        # resumes across the setting.
        self.__dict__["_train_net"] = torch.compile(self.net) if compile else self.net
        self.recipe = recipe
        self.total_steps = total_steps
        self.warmup = warmup
        self.log_every = log_every
        self.eval_names = eval_names
        self.top5 = top5
        self.warmup_done = not warmup
        self.diverged_at: int | None = None
        self.evaluated_at: int | None = None  # the step of the last evaluation during training
        self.last_train: dict[str, float] = {}
        self._window = torch.zeros(3)  # loss sum, wrong count, samples over the current logging window
        self._eval: dict[int, torch.Tensor] = {}
        self._window_start = time.perf_counter()
        self._window_steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # ------------------------------------------------------------------------------------------------------ schedule
    def current_lr(self) -> float:
        if not self.warmup_done:
            return self.recipe["warmup_lr"]
        return lr_at(self.global_step, self.recipe, self.total_steps)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if not self.warmup_done and self.global_step >= self.recipe["warmup_steps"]:
            self.warmup_done = True
        lr = self.current_lr()
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = lr

    def configure_optimizers(self):
        return build_optimizer(self.net.parameters(), self.recipe)  # recipe.optimizer: SGD unless the recipe says

    # ------------------------------------------------------------------------------------------------------ training
    def training_step(self, batch, batch_idx):
        x, y = batch
        x = x.contiguous(memory_format=self.memory_format)
        logits = self._train_net(x)
        loss = F.cross_entropy(logits, y)
        if self._window.device != loss.device:
            self._window = self._window.to(loss.device)
        wrong = (logits.detach().argmax(1) != y).sum()
        # new_full, not new_tensor: a Python number copied to a GPU waits for the stream (one sync per step)
        n = loss.new_full((), y.numel(), dtype=torch.float32)
        self._window += torch.stack([loss.detach().float() * y.numel(), wrong.float(), n])
        self._window_steps += 1
        step = self.global_step + 1
        early_warmup_check = not self.warmup_done and step % 10 == 0
        if step % self.log_every == 0 or step == self.total_steps or early_warmup_check:
            self._flush_window(step, x.shape[0])
        return loss

    def _flush_window(self, step: int, batch_size: int) -> None:
        total = (
            self.trainer.strategy.reduce(self._window.clone(), reduce_op="sum")
            if self.trainer.world_size > 1
            else self._window
        )
        loss_sum, wrong, n = total.tolist()  # the one read-back of the window
        if not math.isfinite(loss_sum):
            self.diverged_at = step
            self.trainer.should_stop = True
            return
        err = 100.0 * wrong / max(n, 1)
        if not self.warmup_done and err < self.recipe["warmup_until_error"]:
            self.warmup_done = True
        if step % self.log_every and step != self.total_steps:
            return  # a warm-up check only: keep accumulating the window
        elapsed = time.perf_counter() - self._window_start
        ips = self._window_steps * batch_size * self.trainer.world_size / max(elapsed, 1e-9)
        self.last_train = {"train/loss": loss_sum / max(n, 1), "train/err": err}
        if step % self.log_every == 0:  # Lightning writes to the loggers on these steps only (same log_every_n_steps)
            row = {**self.last_train, "lr": self.current_lr(), "train/ips": ips}
            self.log_dict(row, prog_bar=True, on_step=True)
            for logger in self.trainer.loggers:  # metrics.csv has the row before this step's checkpoint is written
                if hasattr(logger, "write_row"):
                    logger.write_row(step, {**row, "epoch": self.current_epoch})
        self._window.zero_()
        self._window_start, self._window_steps = time.perf_counter(), 0

    # ---------------------------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch, dataloader_idx: int) -> None:
        x, y = batch
        if isinstance(x, torch.Tensor) and x.dim() == 4:  # one view of each image
            logits = self.net(x.contiguous(memory_format=self.memory_format))
            loss = F.cross_entropy(logits, y, reduction="sum")
        else:  # 10 crops (B, 10, C, H, W) or a list of scales (data.test_crops, data.test_scales): scores averaged
            scores = class_scores(lambda v: self.net(v.contiguous(memory_format=self.memory_format)), x)
            logits = scores.clamp_min(torch.finfo(scores.dtype).tiny).log()  # the averaged scores' log: same ranking
            loss = F.nll_loss(logits, y, reduction="sum")
        # Counts in float32, not the logits' dtype: under bf16-mixed, bf16 holds integers exactly only up to 256
        counts = [loss, (logits.argmax(1) != y).sum().float()]
        if self.top5:
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            counts.append((~(top5 == y[:, None]).any(1)).sum().float())
        counts.append(logits.new_full((), y.numel(), dtype=torch.float32))
        sums = torch.stack([c.float() for c in counts])
        self._eval[dataloader_idx] = self._eval.get(dataloader_idx, 0) + sums

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, dataloader_idx)

    def _log_eval(self, names: tuple[str, ...]) -> None:
        for idx, sums in sorted(self._eval.items()):
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum") if self.trainer.world_size > 1 else sums
            values = sums.tolist()
            n = max(values[-1], 1)
            name = names[idx]
            metrics = {f"{name}/loss": values[0] / n, f"{name}/err": 100.0 * values[1] / n}
            if self.top5:
                metrics[f"{name}/err5"] = 100.0 * values[2] / n
            self.log_dict(metrics, prog_bar=name != "test", add_dataloader_idx=False, rank_zero_only=True)
        self._eval = {}

    def on_validation_epoch_end(self) -> None:
        self._log_eval(self.eval_names)
        if not self.trainer.sanity_checking:
            self.evaluated_at = self.global_step

    def on_test_epoch_end(self) -> None:
        self._log_eval(("test",))

    def on_test_start(self) -> None:
        """Multi-scale testing (data.test_scales) gives nearly every image a new shape: with cuDNN's autotuning on,
        each new shape is benchmarked first (pytorch/pytorch#2759), which would make R1 Table 4's test take hours.
        Off for the test; training keeps it (its batches have one shape)."""
        self._benchmark = torch.backends.cudnn.benchmark
        if getattr(self.trainer.datamodule, "test_scales", None):
            torch.backends.cudnn.benchmark = False

    def on_test_end(self) -> None:
        torch.backends.cudnn.benchmark = self._benchmark

    # ---------------------------------------------------------------------------------------------------- checkpoint
    # A resumed run must end bitwise equal to an uninterrupted one: besides the weights, optimizer and data position
    # that Lightning saves, the checkpoint holds the global RNG (dropout_shortcut draws from it), the open logging
    # window (else the first window after a resume averages fewer steps) and the last logged training metrics.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        window = self._window
        if self.trainer.world_size > 1:  # every rank dumps the checkpoint, so the sum is a collective all ranks join
            window = self.trainer.strategy.reduce(window.clone(), reduce_op="sum")
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)  # the same on every rank: all are seeded alike
        checkpoint["resablate"] = {
            "warmup_done": self.warmup_done,
            "window": window.tolist(),
            "window_steps": self._window_steps,
            "last_train": dict(self.last_train),
            "rng": rng,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("resablate", {})
        self.warmup_done = state.get("warmup_done", self.warmup_done)
        self.last_train = dict(state.get("last_train", self.last_train))
        if "window" in state and self.global_rank == 0:  # rank 0 carries the ranks' summed window; others restart at 0
            self._window = torch.tensor(state["window"], dtype=self._window.dtype)
            self._window_steps = state["window_steps"]
        rng = state.get("rng", {})
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"], torch.cuda.current_device())
