"""Job start-up: the fixed cost of a job before its first training step, for one run and per extra job of a sweep.

    python benchmarks/startup.py --json benchmarks/results/startup_<cpu>.json

Each measurement is a real `python -m resablate` process, as a user runs it, on the README's main job shortened to a
few steps (`data=fashion_mnist recipe=quick depth=20`, W&B offline; `--data synthetic` where the Debian package is
missing). Read from each job's summary.json (`timing`: wall-clock times the job records):

- single run, time to first step: from just before the process is started to the first training step begins;
  split into `to_job` (interpreter, imports, command-line checks, Hydra's composition: until `train(cfg)` starts)
  and `in_job` (checks, data, network, run folder, W&B, Trainer, until the first step).
- single run, time to exit (`to_exit`): from its summary.json written (`timing.end`) to the process's exit:
  everything the process does after it, the interpreter's teardown included.
- sweep (`-m seed=0,...,N-1`): the first job as above; each further job from the end of the job before (its
  summary written) to its own first step: the previous job's W&B finish and clean-up, Hydra's next job, and that
  job's own set-up (`in_job`).

Medians over `--repeats` runs of each. Run it on a quiet machine: every other process on 2 cores shows up here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resablate.app.hardware import detect

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def base_args(data: str, steps: int) -> list[str]:
    return [f"data={data}", "recipe=quick", "depth=20", f"trainer.max_steps={steps}", "recipe.eval_every=1000",
            "logger.wandb.mode=offline"]


def launch(args: list[str], cwd: Path) -> tuple[float, float]:
    """Run `python -m resablate ARGS` in `cwd`; the wall-clock times just before it started and just after it
    exited."""
    env = {**os.environ, "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "resablate", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"python -m resablate {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return started, time.time()


def timing(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())["timing"]


def single(data: str, steps: int, workdir: Path) -> dict:
    run = workdir / "run"
    started, exited = launch([*base_args(data, steps), f"hydra.run.dir={run}"], workdir)
    t = timing(run)
    return {"to_first_step": t["first_step"] - started, "to_job": t["job_start"] - started,
            "in_job": t["first_step"] - t["job_start"], "to_exit": exited - t["end"]}


def sweep(data: str, steps: int, jobs: int, workdir: Path) -> dict:
    folder = workdir / "sweep"
    seeds = ",".join(str(k) for k in range(jobs))
    started, _ = launch(["-m", *base_args(data, steps), f"seed={seeds}", f"hydra.sweep.dir={folder}"], workdir)
    times = [timing(folder / str(k)) for k in range(jobs)]
    extra = [times[k]["first_step"] - times[k - 1]["end"] for k in range(1, jobs)]
    return {"first_job_to_first_step": times[0]["first_step"] - started,
            "extra_job": statistics.median(extra),
            "extra_job_in_job": statistics.median(t["first_step"] - t["job_start"] for t in times[1:]),
            "extra_job_between_jobs": statistics.median(times[k]["job_start"] - times[k - 1]["end"]
                                                        for k in range(1, jobs))}


def cpu_name() -> str:
    return detect("cpu").describe()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=4, help="jobs of the sweep (default 4)")
    p.add_argument("--steps", type=int, default=2, help="training steps of each job (default 2)")
    p.add_argument("--data", choices=("fashion_mnist", "synthetic"),
                   default="fashion_mnist" if FASHION_MNIST.is_dir() else "synthetic")
    p.add_argument("--label", default="", help="a name for this measurement, e.g. before / after")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.jobs < 2 or args.steps < 1:
        p.error("--repeats and --steps must be >= 1, --jobs >= 2")
    singles, sweeps = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="resablate-startup-") as workdir:
            singles.append(single(args.data, args.steps, Path(workdir)))
            sweeps.append(sweep(args.data, args.steps, args.jobs, Path(workdir)))
    result = {
        "label": args.label,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "data": args.data,
        "jobs": args.jobs,
        "repeats": args.repeats,
        **{f"single_{k}": round(statistics.median(r[k] for r in singles), 3) for k in singles[0]},
        **{f"sweep_{k}": round(statistics.median(r[k] for r in sweeps), 3) for k in sweeps[0]},
        "raw": {"single": singles, "sweep": sweeps},
    }
    print(f"{result['cpu']}, {args.data}, medians of {args.repeats}:")
    print(f"  single run: {result['single_to_first_step']:.2f} s to the first step "
          f"({result['single_to_job']:.2f} s to train(cfg), {result['single_in_job']:.2f} s in it); "
          f"{result['single_to_exit']:.2f} s from its summary written to the process's exit")
    print(f"  sweep of {args.jobs}: first job {result['sweep_first_job_to_first_step']:.2f} s, each further job "
          f"{result['sweep_extra_job']:.2f} s ({result['sweep_extra_job_between_jobs']:.2f} s between jobs, "
          f"{result['sweep_extra_job_in_job']:.2f} s in the job)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
