"""The offline W&B run of a job, read back from its `run-*.wandb` file as W&B's own sync would read it: the config
carries what ran (the resolved architecture, precision, params and MACs) and which code made it; the history's steps
are metrics.csv's; the final test is logged once; the summary uses metrics.csv's names; a completed run and a pruned
trial both finish with exit code 0, the pruned one with status `pruned`.

wandb ships no reader for offline runs; the file is W&B's record log (LevelDB's log layout: 32 KiB blocks of
checksummed chunks, after a 7-byte `:W&B` header) of `wandb_internal_pb2.Record` messages, decoded here."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import run_app

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def items(update) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in update}


def read_run(run_dir: Path) -> dict:
    (file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    out: dict = {"config": {}, "history": [], "summary": {}, "exit": None}
    for record in wandb_records(file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["config"].update(items(record.run.config.update))
        elif kind == "config":
            out["config"].update(items(record.config.update))
        elif kind == "history":
            out["history"].append(items(record.history.item))
        elif kind == "summary":
            out["summary"].update(items(record.summary.update))
        elif kind == "exit":
            out["exit"] = record.exit.exit_code
    return out


TINY = ["data=synthetic", "data.num_samples=256", "depth=8", "recipe=quick", "recipe.batch_size=32",
        "trainer.log_every_n_steps=2", "logger.wandb.mode=offline"]


@pytest.mark.slow
def test_a_completed_runs_wandb_record(tmp_path):
    run_app([*TINY, "trainer.max_steps=6", "recipe.eval_every=3", f"hydra.run.dir={tmp_path / 'run'}"],
            cwd=tmp_path)
    run, summary = read_run(tmp_path / "run"), json.loads((tmp_path / "run" / "summary.json").read_text())
    config = run["config"]
    assert config["block.name"] == "auto" and config["resolved.block"] == "basic"  # asked, and what ran
    assert config["trainer.precision"] == "auto" and config["resolved.precision"] == summary["precision"]
    assert config["resolved.stage_depths"] == [1, 1, 1] and config["resolved.widths"] == [16, 32, 64]
    assert (config["resolved.params"], config["resolved.macs"]) == (summary["params"], summary["macs"])
    assert config["resolved.threads"] == summary["threads"] and "resolved.channels_last" in config
    assert config["provenance.code.commit"] == summary["code"]["commit"]

    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    history = [row for row in run["history"] if "trainer/global_step" in row]
    assert sorted({row["trainer/global_step"] for row in history}) == sorted(metrics.step)  # [2, 3, 4, 6]
    tests = [row["trainer/global_step"] for row in history if "test/err" in row]
    assert tests == list(metrics.step[metrics["test/err"].notna()])  # 3 and 6: the final test not logged again

    assert run["summary"]["test/err"] == pytest.approx(summary["test_error"])
    assert run["summary"]["train/err"] == pytest.approx(summary["train_error"])
    assert "test_error" not in run["summary"] and "train_error" not in run["summary"]  # one name per number
    assert run["summary"]["status"] == "completed" and run["exit"] == 0


@pytest.mark.slow
def test_a_pruned_trials_wandb_record(tmp_path):
    """A real trial of a real study: a finished trial that reported 0 % at every step makes the median pruner prune
    this job at its first report (step 2)."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.add_trial(optuna.trial.create_trial(value=0.0, intermediate_values={s: 0.0 for s in range(1, 9)}))
    trial = study.ask()
    description = {"storage": storage, "study_name": "s", "trial_id": trial._trial_id, "number": trial.number,
                   "n_objectives": 1, "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}}
    run_app(["-m", *TINY, "trainer.max_steps=8", "recipe.eval_every=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
            cwd=tmp_path, check=False, env={"RESABLATE_OPTUNA_TRIAL": json.dumps(description)})
    folder = tmp_path / "sweep" / "0"
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["status"], summary["pruned_at"]) == ("pruned", 2)
    run = read_run(folder)
    assert run["summary"]["status"] == "pruned" and run["summary"]["steps"] == 2
    assert run["exit"] == 0  # finished, not failed: the sweeper stopped it
    assert run["config"]["resolved.params"] == summary["params"]


if __name__ == "__main__":  # python tests/app/test_wandb_run.py RUN_DIR: print what an offline run holds
    print(json.dumps(read_run(Path(sys.argv[1])), indent=1, default=str))
