"""Trainer options and the optimizer are reachable from config without code changes; bad ones are named."""

import json

import pytest
import torch

from resablate.app.checks import extra_trainer_options
from resablate.app.trainer import build_trainer
from resablate.builder import ConfigError, build_optimizer
from tests.conftest import run_app

TINY = ["data=synthetic", "data.num_samples=256", "depth=8", "recipe=quick", "recipe.batch_size=16", "logger=csv",
        "trainer.max_steps=4"]


def test_extra_trainer_options_reach_pl_trainer(compose, tmp_path):
    cfg = compose(["+trainer.gradient_clip_val=1.0", "+trainer.accumulate_grad_batches=2"])
    assert extra_trainer_options(cfg.trainer) == {"gradient_clip_val": 1.0, "accumulate_grad_batches": 2}
    trainer = build_trainer(cfg.trainer, precision="32-true", strategy="auto", max_steps=10, eval_every=5, loggers=[],
                            callbacks=[], plugins=[], root_dir=tmp_path, accelerator="cpu")
    assert (trainer.gradient_clip_val, trainer.accumulate_grad_batches) == (1.0, 2)


@pytest.mark.parametrize("key,message", [
    ("+trainer.gradient_clip=1.0", "trainer has no key 'gradient_clip'; resablate's keys: accelerator"),
    ("+trainer.max_epochs=3", "trainer has no key 'max_epochs' (max_epochs: set by resablate"),
])
def test_a_trainer_option_pl_trainer_does_not_take_is_named(compose, key, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        extra_trainer_options(compose([key]).trainer)


@pytest.mark.parametrize("spec,cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW),
                                      ("RMSprop", torch.optim.RMSprop),
                                      ({"_target_": "torch.optim.Adam", "betas": [0.8, 0.9]}, torch.optim.Adam)])
def test_the_optimizer_by_name_or_target(spec, cls):
    recipe = {"optimizer": spec, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True}
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], recipe)
    assert type(optimizer) is cls and optimizer.defaults["lr"] == 0.05 and optimizer.defaults["weight_decay"] == 1e-4
    if cls is torch.optim.SGD:  # the paper's: every recipe key
        assert (optimizer.defaults["momentum"], optimizer.defaults["nesterov"]) == (0.9, True)
    if isinstance(spec, dict):
        assert optimizer.defaults["betas"] == (0.8, 0.9)


@pytest.mark.slow
def test_a_run_with_another_optimizer_and_gradient_clipping(tmp_path):
    """The run trained with AdamW (its checkpoint holds AdamW's moment estimates and betas, which SGD has not)."""
    run_app([*TINY, "recipe.optimizer=adamw", "recipe.lr=0.001", "+trainer.gradient_clip_val=1.0",
             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    (optimizer,) = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"]
    (group,) = optimizer["param_groups"]
    assert group["betas"] == (0.9, 0.999)
    assert {"exp_avg", "exp_avg_sq"} <= set(optimizer["state"][0])


@pytest.mark.slow
def test_a_bad_optimizer_is_refused_before_training(tmp_path):
    out = run_app([*TINY, "recipe.optimizer=adamx", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert out.returncode == 2
    assert "resablate: error: recipe.optimizer='adamx' is not valid; valid: adadelta" in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_bad_trainer_option_is_refused_before_training(tmp_path):
    out = run_app([*TINY, "+trainer.gradient_clip=1.0", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and "resablate: error: trainer has no key 'gradient_clip'" in out.stderr
    assert not (tmp_path / "run").exists()
