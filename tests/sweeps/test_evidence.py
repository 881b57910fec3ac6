"""The evidence sweeps, shortened as their headers say, end to end on real Fashion-MNIST: +sweep=degradation (plain and
ResNet at 20 and 56 layers), +sweep=constructed (plain-56 built from the plain-20), and the artifacts made from them:
`analysis constructed` (the constructed net starts with the shallow net's errors), `analysis compare` (pairs by depth
with their statistics) and Fig. 1."""

from __future__ import annotations

import pytest

from analysis.__main__ import main
from resablate.records import RunFolder
from tests.conftest import compose_app, needs_fashion_mnist, run_app
from tests.sweeps.test_sweeps import header_commands


def test_the_constructed_sweep_trains_as_the_degradation_sweep_trained_its_plain_56_from_scratch():
    """R1's comparison is only fair with the same data, recipe, length and launcher: the two files must not drift."""
    degradation, constructed = (compose_app([f"+sweep={name}", "seed=0"], return_hydra_config=True)
                                for name in ("degradation", "constructed"))
    for key in ("data", "recipe", "trainer", "channels_last"):
        assert constructed[key] == degradation[key], key
    assert constructed.hydra.launcher == degradation.hydra.launcher
    assert (constructed.shortcut.name, constructed.depth) == ("none", 56)
    assert constructed.model.init_from == "multirun/degradation/depth=20,seed=0,shortcut=none"


@pytest.mark.slow
@needs_fashion_mnist
def test_the_shortened_evidence_sweeps_and_their_artifacts(tmp_path, capsys):
    _, degradation = header_commands("degradation")
    run_app(degradation, cwd=tmp_path)
    sweep = tmp_path / "multirun" / "degradation"  # <its overrides>/<job>/, as the constructed header names it
    folders = {p.parent.name: p.parent for p in sweep.rglob("summary.json")}
    assert sorted(folders) == ["depth=20,seed=0,shortcut=none", "depth=20,seed=0,shortcut=zero_pad",
                               "depth=56,seed=0,shortcut=none", "depth=56,seed=0,shortcut=zero_pad"]
    plain20 = folders["depth=20,seed=0,shortcut=none"]

    _, constructed = header_commands("constructed")
    run_app(constructed, cwd=tmp_path)  # its model.init_from names the shortened plain-20's folder
    (built,) = [p.parent for p in (tmp_path / "multirun" / "constructed").rglob("summary.json")]
    summary = RunFolder(built).summary()
    assert (summary["status"], summary["depth"], summary["init_from"]) == ("completed", 56, str(plain20.resolve()))

    out = tmp_path / "out"
    runs = [str(sweep), str(built)]
    # 512 training and 512 test images: four nets (three of 56 layers) on all 10,000 test images take most of a minute
    assert main(["constructed", "--runs", *runs, "--out", str(out), "--max-images", "512", "--test-images", "512"]) == 0
    text = capsys.readouterr().out
    assert "largest difference of errors 0.00 points over all seeds" in text  # before training: the shallow net
    assert "test on the first 512 test images only" in text
    for role in ("shallow, trained", "constructed, before training", "from scratch, trained",
                 "constructed, after training"):
        assert f"| {role}" in text
    assert {p.name for p in out.iterdir()} >= {"constructed.png", "constructed.csv", "constructed.md"}

    assert main(["compare", "--runs", str(sweep), "--by", "depth", "--metric", "train_error", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| plain-20 " in text and "| plain-56 " in text and "| ResNet-20 " in text
    assert "fewer than 2 runs in an arm" in text  # one seed each: no claim

    assert main(["fig1", "--runs", str(sweep), "--dataset", "fashion_mnist", "--out", str(out)]) == 0
    assert (out / "fig1.png").exists()


@pytest.mark.slow
@needs_fashion_mnist
def test_init_from_a_folder_without_a_checkpoint_is_refused_before_training(tmp_path):
    proc = run_app(["data=fashion_mnist", "data.train_size=512", "depth=56", "shortcut=none", "recipe=quick",
                    "trainer.max_steps=2", "logger=csv", f"model.init_from={tmp_path / 'nothing'}",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"resablate: error: model.init_from={tmp_path / 'nothing'}: no "
                                   "checkpoints/last.ckpt there; it names the run folder of a trained shallower plain "
                                   "net")

