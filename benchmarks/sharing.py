"""Two resablate processes on one machine: do they share its cores, or fight over them?

    python benchmarks/sharing.py --json benchmarks/results/sharing_<cpu>.json [--repeats 3] [--optuna]

Each measurement is a real `python -m resablate` process (wall time from just before it starts to its exit) running
`data=fashion_mnist recipe=quick depth=8 trainer.max_steps=200 logger=csv` (`--data synthetic` where the
Debian package is missing), seeds 1 and 2:

- alone: each job by itself, one after the other (their sum is the time of the pair run in turn);
- together: both started at once, with `trainer.threads=auto` (they find each other and share the cores);
- fighting: both started at once, each with `trainer.threads=<all cores>` (what `auto` did before processes knew
  each other; `--no-fight` leaves it out, it is the slowest part);
- alone, explicit: one job with `trainer.threads=<all cores>` (no sharing machinery at work), against `alone`.

With `--optuna`, also two Optuna workers on one SQLite study of 4 trials of `--optuna-steps` steps (the same command
started twice at once) against one worker running the 4 trials alone. Medians over `--repeats`. Run it on a quiet
machine.
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

from resablate.app.hardware import detect, usable_cores

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def job_args(data: str, steps: int, seed: int, run: Path, extra: list[str]) -> list[str]:
    return [f"data={data}", "recipe=quick", "depth=8", f"trainer.max_steps={steps}", "logger=csv", f"seed={seed}",
            f"hydra.run.dir={run}", *extra]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_SILENT": "true"}
    for key in ("WANDB_API_KEY", "OMP_NUM_THREADS"):
        env.pop(key, None)
    return subprocess.Popen([sys.executable, "-m", "resablate", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(proc.args)} failed ({proc.returncode}):\n{err[-3000:]}")


def timed(arg_lists: list[list[str]], cwd: Path) -> float:
    """Seconds from starting every command at once to the last one's exit."""
    began = time.perf_counter()
    wait([start(args, cwd) for args in arg_lists])
    return time.perf_counter() - began


def ips(run: Path) -> float:
    return json.loads((run / "summary.json").read_text())["images_per_second"]


def history(run: Path) -> list[dict]:
    return json.loads((run / "summary.json").read_text()).get("threads_history")


def pair(data: str, steps: int, work: Path, fight: bool) -> dict:
    cores = usable_cores()
    runs = {name: {s: work / f"{name}{s}" for s in (1, 2)} for name in ("alone", "together", "fighting", "explicit")}
    record: dict = {}
    record["alone_s"] = [timed([job_args(data, steps, s, runs["alone"][s], [])], work) for s in (1, 2)]
    record["alone_ips"] = [ips(runs["alone"][s]) for s in (1, 2)]
    record["explicit_s"] = timed([job_args(data, steps, 1, runs["explicit"][1], [f"trainer.threads={cores}"])], work)
    record["explicit_ips"] = ips(runs["explicit"][1])
    record["together_s"] = timed([job_args(data, steps, s, runs["together"][s], []) for s in (1, 2)], work)
    record["together_ips"] = [ips(runs["together"][s]) for s in (1, 2)]
    record["together_threads_history"] = [history(runs["together"][s]) for s in (1, 2)]
    if fight:
        record["fighting_s"] = timed([job_args(data, steps, s, runs["fighting"][s], [f"trainer.threads={cores}"])
                                      for s in (1, 2)], work)
        record["fighting_ips"] = [ips(runs["fighting"][s]) for s in (1, 2)]
    return record


def optuna(data: str, steps: int, work: Path) -> dict:
    def worker(study: str) -> list[str]:
        return ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", f"hydra.sweeper.study_name={study}",
                f"hydra.sweeper.storage=sqlite:///{work / (study + '.db')}", "hydra.sweeper.params.seed=range(1,100)",
                f"hydra.sweep.dir={work / study}", f"data={data}", "recipe=quick", "depth=8",
                f"trainer.max_steps={steps}", "logger=csv"]

    return {"one_worker_s": timed([worker("one")], work), "two_workers_s": timed([worker("two"), worker("two")], work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion_mnist" if FASHION_MNIST.exists() else "synthetic")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-fight", action="store_true")
    parser.add_argument("--optuna", action="store_true")
    parser.add_argument("--optuna-steps", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rounds, studies = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="resablate-sharing-") as tmp:
            rounds.append(pair(args.data, args.steps, Path(tmp), fight=not args.no_fight and repeat == 0))
            if args.optuna:
                studies.append(optuna(args.data, args.optuna_steps, Path(tmp)))
        print(json.dumps(rounds[-1]), flush=True)
    median = statistics.median
    result = {
        "device_name": detect("cpu").describe(), "usable_cores": usable_cores(), "python": platform.python_version(),
        "job": " ".join(job_args(args.data, args.steps, 1, Path("<run>"), [])), "repeats": args.repeats,
        "rounds": rounds, "optuna": studies,
        "median": {
            "in_turn_s": median(sum(r["alone_s"]) for r in rounds),
            "together_s": median(r["together_s"] for r in rounds),
            "alone_ips": median(r["alone_ips"][0] for r in rounds),
            "explicit_ips": median(r["explicit_ips"] for r in rounds),
        },
    }
    m = result["median"]
    m["together_over_in_turn"] = m["together_s"] / m["in_turn_s"]
    m["alone_auto_over_explicit_ips"] = m["alone_ips"] / m["explicit_ips"]
    fights = [r["fighting_s"] for r in rounds if "fighting_s" in r]
    if fights:
        m["fighting_s"] = median(fights)
        m["fighting_over_in_turn"] = m["fighting_s"] / m["in_turn_s"]
    if studies:
        m["optuna_one_worker_s"] = median(s["one_worker_s"] for s in studies)
        m["optuna_two_workers_s"] = median(s["two_workers_s"] for s in studies)
    print(f"{result['device_name']}, {result['usable_cores']} usable cores; {result['job']}")
    fighting = (f"; fighting (threads=all cores each) {m['fighting_s']:.1f} s = {m['fighting_over_in_turn']:.2f}x"
                if fights else "")
    print(f"  two jobs in turn {m['in_turn_s']:.1f} s; together (threads=auto) {m['together_s']:.1f} s "
          f"= {m['together_over_in_turn']:.2f}x{fighting}")
    print(f"  one job alone: {m['alone_ips']:.0f} img/s with threads=auto, {m['explicit_ips']:.0f} with "
          f"threads={usable_cores()} ({m['alone_auto_over_explicit_ips']:.3f}x)")
    if studies:
        print(f"  Optuna, 4 trials of {args.optuna_steps} steps: one worker {m['optuna_one_worker_s']:.1f} s, "
              f"two workers on one study "
              f"{m['optuna_two_workers_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
