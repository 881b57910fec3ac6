"""Runs read from the W&B API instead of run folders, into the same frame (`--wandb ENTITY/PROJECT`).

Each W&B run's summary holds the scalar keys of summary.json (resablate/app/train.py writes them there at the end of a
job); its metrics over steps come from `scan_history`. Checkpoints are not on W&B, so fig7 needs run folders.
Everything here needs the network and a W&B key; without them it fails at once, or after TIMEOUT seconds, saying so.
"""

from __future__ import annotations

import json
import threading

import pandas as pd

from resablate.records import SUMMARY_METRICS, arm_of_resolved

from .runs import COLUMNS, Runs, normalize, with_arms

TIMEOUT = 60.0
STATE_STATUS = {"crashed": "failed", "failed": "failed", "killed": "failed", "running": "missing"}
METRICS = ("train/err", "train/loss", "lr", "train/ips", "test/err", "test/loss", "val/err", "val/loss")


class WandbUnavailable(RuntimeError):
    pass


def _guarded(fn, what: str):
    """fn() in a daemon thread, so that an unreachable server costs TIMEOUT seconds, not a hang."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised below with the context the user needs
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if thread.is_alive():
        raise WandbUnavailable(f"W&B did not answer within {TIMEOUT:.0f} s while {what}; are you online?")
    if "error" in result:
        err = result["error"]
        raise WandbUnavailable(f"cannot read W&B while {what}: {type(err).__name__}: {err}. W&B needs the network and "
                               "a key (wandb login, or WANDB_API_KEY); run folders are read with --runs.") from err
    return result["value"]


def load(path: str, filters: str | None = None) -> Runs:
    """Runs of ENTITY/PROJECT (optionally a MongoDB-style filter as JSON, e.g. '{"group": "table6"}')."""
    if path.count("/") != 1:
        raise WandbUnavailable(f"--wandb {path!r}: give ENTITY/PROJECT")

    def fetch():
        import wandb

        api = wandb.Api(timeout=int(TIMEOUT))
        rows, configs = [], []
        for run in api.runs(path, filters=json.loads(filters) if filters else None):
            raw = dict(run.summary)
            # summary.json's names; runs logged since the W&B summary took metrics.csv's names have those
            raw.update({name: raw[metric] for name, metric in SUMMARY_METRICS.items() if metric in raw})
            summary = {k: v for k, v in raw.items() if k in COLUMNS}
            summary.setdefault("status", STATE_STATUS.get(run.state, run.state))
            rows.append({**summary, "run_dir": f"wandb:{path}/{run.id}"})
            made_by = {k.removeprefix("provenance.code."): v for k, v in dict(run.config).items()
                       if k.startswith("provenance.code.")}
            rows[-1]["code"] = made_by or None  # which code made it: the W&B config's provenance (train.py)
            config = {k: v for k, v in dict(run.config).items() if not k.startswith(("provenance.", "_"))}
            configs.append(arm_of_resolved(config) if "depth" in config else None)  # else: the summary's keys
        return api, rows, configs

    api, rows, configs = _guarded(fetch, f"listing the runs of {path}")

    def metrics(run_dir: str) -> pd.DataFrame:
        run = api.run(run_dir.removeprefix("wandb:"))
        history = pd.DataFrame(_guarded(lambda: list(run.scan_history()), f"reading the history of {run_dir}"))
        if history.empty:
            return pd.DataFrame(columns=["step"])
        step = "trainer/global_step" if "trainer/global_step" in history else "_step"
        history = history.rename(columns={step: "step"})
        return history[["step", *[c for c in METRICS if c in history]]].groupby("step", as_index=False).first()

    return with_arms(Runs(normalize(pd.DataFrame(rows)), f"W&B {path}", metrics_reader=metrics), configs)
