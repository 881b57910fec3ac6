"""The GPU check: every stage a lent GPU should see, in priority order, within one budget; a verdict per check.

Run by `benchmarks/gpu_check.sh` (which sets up a lent machine first); on a machine without CUDA, or with
`GPU_CHECK_DRY=1`, every stage runs on the CPU at tiny sizes (the dry run: the script cannot rot before a GPU comes).

    python benchmarks/gpu_check.py --out DIR [--budget-s 450]

Writes under DIR: `checks.json` and `checks.md` (one row per check: PASS, WARN, FAIL or SKIP, with its figure and its
threshold), and each stage's own files (run folders, throughput rows, the profile). A stage is skipped when less budget
is left than it needs; each runs as its own process with what is left as its time limit. Exit status: 0 when no check
FAILed (WARN and SKIP included), 1 otherwise.

Stages and their thresholds (GPU sizes; the dry run's are beside each stage's code):
1. smoke: `python -m resablate` on synthetic data, ResNet-20, 200 steps: completes, on the GPU, `arithmetic` recorded.
2. throughput: `benchmarks/throughput.py --device cuda`, ResNet-20/56/110, batch 128, bf16-mixed, NCHW and NHWC:
   Lightning/bare ratio >= 0.90 PASS, >= 0.75 WARN, below FAIL.
3. profile: 50 training steps under torch.profiler: host read-backs (`aten::_local_scalar_dense`: .item(), .tolist())
   per step < 0.5 PASS (one every step FAILs: a host sync per step); host-to-device copies per step 0 PASS (the data
   set lives on the device), pageable ones FAIL; kernels per step reported.
4. deterministic: two runs with `trainer.deterministic=true` and one seed: metrics.csv equal, bitwise.
5. fashion: the quick recipe on Fashion-MNIST (ResNet-20, 1200 steps): test error within 1.5 points of the CPU's
   9.63% (a 2-core EPYC, 32-true; README) PASS, within 3 WARN, above FAIL.
6. resnet50: throughput of ResNet-50 at 224x224 (bf16-mixed), reported with its ratio (same thresholds as 2).
7. side_by_side: 4 jobs of ResNet-20 at once (`hydra/launcher=side_by_side`) against 1: the 4 take < 2x the time
   of 1 PASS (a small net does not fill a large GPU), < 4x WARN, else FAIL (the dry run: 2 jobs, < 1.5x PASS, < 3x
   WARN).
8. compile: throughput with `--compile` against eager: reported (ratio >= 0.95 PASS, else WARN).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CPU_FASHION_ERROR = 9.63  # README, "The main job": ResNet-20, quick recipe, 32-true, 2-core Zen 3 EPYC

# name: (seconds the stage needs at GPU sizes, at dry-run sizes)
STAGES = {"smoke": (60, 40), "throughput": (150, 60), "profile": (60, 40), "deterministic": (60, 50),
          "fashion": (120, 40), "resnet50": (60, 0), "side_by_side": (90, 60), "compile": (120, 0)}


class Check:
    def __init__(self, out: Path, budget_s: float, dry: bool):
        self.out, self.dry, self.deadline = out, dry, time.monotonic() + budget_s
        self.rows: list[dict] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def verdict(self, stage: str, check: str, result: str, figure, threshold: str) -> None:
        self.rows.append({"stage": stage, "check": check, "result": result, "figure": figure, "threshold": threshold})
        print(f"[gpu_check] {result:4} {stage}/{check}: {figure} ({threshold})", flush=True)

    def run(self, args: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true", **(env or {})}
        return subprocess.run(args, cwd=cwd or self.out, env=full_env, capture_output=True, text=True,
                              timeout=max(1.0, self.left()))

    def app(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "resablate", *args], **kw)

    def write(self) -> None:
        (self.out / "checks.json").write_text(json.dumps({"dry": self.dry, "rows": self.rows}, indent=2) + "\n")
        lines = ["| stage | check | result | figure | threshold |", "|---|---|---|---|---|"]
        lines += [f"| {r['stage']} | {r['check']} | {r['result']} | {r['figure']} | {r['threshold']} |"
                  for r in self.rows]
        (self.out / "checks.md").write_text("\n".join(lines) + "\n")


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def failed(check: Check, stage: str, proc: subprocess.CompletedProcess) -> bool:
    if proc.returncode == 0:
        return False
    (check.out / f"{stage}.stderr.txt").write_text(proc.stderr)
    check.verdict(stage, "exit", "FAIL", proc.returncode, f"0; stderr in {stage}.stderr.txt")
    return True


def small(check: Check) -> list[str]:
    accelerator = "trainer.accelerator=cpu" if check.dry else "trainer.accelerator=gpu"
    return ["data=synthetic", "data.num_samples=1024" if check.dry else "data.num_samples=10000", "recipe=quick",
            "logger=csv", accelerator]


def smoke(check: Check) -> None:
    run = check.out / "smoke"
    proc = check.app([*small(check), "depth=20", f"trainer.max_steps={6 if check.dry else 200}",
                      f"hydra.run.dir={run}"])
    if failed(check, "smoke", proc):
        return
    record = summary(run)
    on_gpu = check.dry or "compute capability" in record.get("device_name", "")
    check.verdict("smoke", "completed", "PASS" if record["status"] == "completed" and on_gpu else "FAIL",
                  f"{record['status']} on {record.get('device_name')}", "completed, on the GPU")
    check.verdict("smoke", "arithmetic", "PASS" if record.get("arithmetic") else "FAIL",
                  f"{record.get('precision')} -> {record.get('arithmetic')}", "recorded")


def ratio_verdict(ratio: float) -> str:
    return "PASS" if ratio >= 0.90 else "WARN" if ratio >= 0.75 else "FAIL"


def throughput(check: Check, stage: str, models: str, extra: list[str] = ()) -> list[dict]:
    rows_file = check.out / f"{stage}.json"
    if check.dry:
        args = ["--device", "cpu", "--steps", "4", "--warmup", "1", "--batch", "32", "--precision", "32-true",
                "--channels-last", "off", "--models", "resnet20"]
    else:
        args = ["--device", "cuda", "--steps", "300", "--precision", "bf16-mixed", "--channels-last", "both",
                "--models", models]
    proc = check.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), *args, *extra,
                      "--json", str(rows_file)])
    if failed(check, stage, proc):
        return []
    rows = json.loads(rows_file.read_text())
    for row in rows:
        layout = "NHWC" if row["channels_last"] else "NCHW"
        check.verdict(stage, f"{row['model']} {row['precision']} {layout}", ratio_verdict(row["ratio"]),
                      f"{row['resablate_ips']:.0f} img/s, ratio {row['ratio']:.3f}, MFU {row.get('mfu')}",
                      "Lightning/bare >= 0.90 PASS, >= 0.75 WARN")
    return rows


PROFILE_CODE = r"""
import json, sys
from pathlib import Path
import torch
from torch.profiler import ProfilerActivity, profile
from resablate.app.module import ResNetModule

first, steps, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
state = {}
training_step = ResNetModule.training_step

def profiled(self, batch, batch_idx):
    if self.global_step == first:
        state["prof"] = profile(activities=activities)
        state["prof"].__enter__()
    if self.global_step == first + steps and "prof" in state:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        state["prof"].__exit__(None, None, None)
        counts = {}
        for event in state.pop("prof").events():
            name = event.name
            key = ("readback" if name == "aten::_local_scalar_dense" else
                   "pageable_h2d" if "HtoD" in name and "Pageable" in name else
                   "h2d" if "HtoD" in name else
                   "sync" if name in ("cudaStreamSynchronize", "cudaDeviceSynchronize") else
                   "kernel" if str(event.device_type).endswith("CUDA") and "Memcpy" not in name
                   and "Memset" not in name else None)
            if key:
                counts[key] = counts.get(key, 0) + 1
        out.write_text(json.dumps({"steps": steps, **{k: v / steps for k, v in counts.items()}}))
    return training_step(self, batch, batch_idx)

ResNetModule.training_step = profiled
sys.argv = ["resablate", *sys.argv[4:]]
from resablate.app.cli import cli
cli()
"""


def profile(check: Check) -> None:
    first, steps = (5, 10) if check.dry else (20, 50)
    counts_file = check.out / "profile.json"
    # one epoch holds the window (10000 images are 78 batches), and no evaluation falls in it: steps only
    proc = check.run([sys.executable, "-c", PROFILE_CODE, str(first), str(steps), str(counts_file), *small(check),
                      "data.num_samples=10000", "depth=20", f"trainer.max_steps={first + steps + 2}",
                      f"recipe.eval_every={first + steps + 2}", f"hydra.run.dir={check.out / 'profile'}"],
                     env={"PYTHONPATH": str(ROOT)})
    if failed(check, "profile", proc) or not counts_file.exists():
        return
    per_step = json.loads(counts_file.read_text())
    readback = per_step.get("readback", 0.0)
    check.verdict("profile", "host read-backs per step",
                  "PASS" if readback < 0.5 else "WARN" if readback < 1 else "FAIL", round(readback, 3),
                  "< 0.5 PASS; one per step FAILs (a host sync every step)")
    if check.dry:
        check.verdict("profile", "copies and kernels", "SKIP", "n/a", "CUDA only")
        return
    h2d, pageable = per_step.get("h2d", 0.0) + per_step.get("pageable_h2d", 0.0), per_step.get("pageable_h2d", 0.0)
    check.verdict("profile", "host-to-device copies per step",
                  "FAIL" if pageable else "PASS" if h2d == 0 else "WARN", f"{h2d:.2f} ({pageable:.2f} pageable)",
                  "0 PASS: the data set lives on the device; pageable FAILs")
    check.verdict("profile", "kernels per step", "PASS", round(per_step.get("kernel", 0.0), 1), "reported")
    check.verdict("profile", "stream/device syncs per step", "PASS" if per_step.get("sync", 0) < 0.5 else "WARN",
                  round(per_step.get("sync", 0.0), 3), "< 0.5 PASS")


def deterministic(check: Check) -> None:
    curves = []
    for name in ("det1", "det2"):
        run = check.out / name
        proc = check.app([*small(check), "depth=20", "trainer.deterministic=true", "seed=7",
                          f"trainer.max_steps={10 if check.dry else 100}", "trainer.log_every_n_steps=5",
                          f"hydra.run.dir={run}"])
        if failed(check, "deterministic", proc):
            return
        rows = (run / "metrics.csv").read_text().splitlines()
        header = rows[0].split(",")
        drop = [i for i, h in enumerate(header) if h in ("train/ips",)]
        curves.append([[v for i, v in enumerate(r.split(",")) if i not in drop] for r in rows])
    check.verdict("deterministic", "metrics.csv equal", "PASS" if curves[0] == curves[1] else "FAIL",
                  f"{len(curves[0]) - 1} rows", "bitwise equal (train/ips aside)")


def fashion(check: Check) -> None:
    if not FASHION_MNIST.exists() and not os.environ.get("GPU_CHECK_FASHION_ROOT"):
        check.verdict("fashion", "test error", "SKIP", "no Fashion-MNIST", "carry it (gpu_check.sh prepare)")
        return
    root = os.environ.get("GPU_CHECK_FASHION_ROOT", str(FASHION_MNIST))
    run = check.out / "fashion"
    steps = ["trainer.max_steps=30"] if check.dry else []
    proc = check.app(["data=fashion_mnist", f"data.root={root}", "recipe=quick", "depth=20", "logger=csv",
                      "trainer.accelerator=cpu" if check.dry else "trainer.accelerator=gpu", *steps,
                      f"hydra.run.dir={run}"])
    if failed(check, "fashion", proc):
        return
    record = summary(run)
    error = record["test_error"]
    if check.dry:
        check.verdict("fashion", "test error", "PASS" if record["status"] == "completed" else "FAIL",
                      f"{error:.2f}% after 30 steps", "dry run: completes")
        return
    gap = error - CPU_FASHION_ERROR
    check.verdict("fashion", "test error", "PASS" if gap <= 1.5 else "WARN" if gap <= 3 else "FAIL",
                  f"{error:.2f}% ({record['precision']}; the CPU's {CPU_FASHION_ERROR}%)",
                  "within 1.5 points PASS, 3 WARN")


def side_by_side(check: Check) -> None:
    jobs = 2 if check.dry else 4  # the dry run: the stage works (two cores cannot overlap four jobs anyway)
    times = {}
    for k in (1, jobs):
        sweep = check.out / f"side_by_side_{k}"
        seeds = ",".join(str(s) for s in range(k))
        began = time.perf_counter()
        proc = check.app(["-m", "hydra/launcher=side_by_side", f"hydra.launcher.n_jobs={k}", *small(check),
                          "depth=20", f"seed={seeds}", f"trainer.max_steps={6 if check.dry else 300}",
                          f"hydra.sweep.dir={sweep}"])
        if failed(check, "side_by_side", proc):
            return
        times[k] = time.perf_counter() - began
    ratio = times[jobs] / times[1]
    limit = (1.5, 3.0) if check.dry else (2.0, 4.0)  # on 2 CPU cores 2 jobs overlap little
    check.verdict("side_by_side", f"{jobs} jobs against 1", "PASS" if ratio < limit[0] else "WARN" if ratio < limit[1]
                  else "FAIL", f"{times[jobs]:.1f} s against {times[1]:.1f} s = {ratio:.2f}x",
                  f"< {limit[0]}x PASS, < {limit[1]}x WARN")


def compiled(check: Check) -> None:
    eager = {(r["model"], r["channels_last"]): r for r in json.loads((check.out / "throughput.json").read_text())} \
        if (check.out / "throughput.json").exists() else {}
    rows = throughput(check, "compile", "resnet20", ["--compile"])
    for row in rows:
        base = eager.get((row["model"], row["channels_last"]))
        if base:
            speed = row["resablate_ips"] / base["resablate_ips"]
            check.verdict("compile", f"{row['model']} compiled/eager", "PASS" if speed >= 0.95 else "WARN",
                          f"{speed:.2f}x", ">= 0.95 PASS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=450)
    args = parser.parse_args()
    import torch

    dry = os.environ.get("GPU_CHECK_DRY") == "1" or not torch.cuda.is_available()
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.budget_s, dry)
    print(f"[gpu_check] {'dry run on the CPU' if dry else torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
          f"budget {args.budget_s:.0f} s; results in {args.out}", flush=True)
    stages = {"smoke": smoke, "throughput": lambda c: throughput(c, "throughput", "resnet20,resnet56,resnet110"),
              "profile": profile, "deterministic": deterministic, "fashion": fashion,
              "resnet50": lambda c: throughput(c, "resnet50", "resnet50"), "side_by_side": side_by_side,
              "compile": compiled}
    for name, stage in stages.items():
        need = STAGES[name][1 if dry else 0]
        if need == 0:
            check.verdict(name, "-", "SKIP", "n/a", "GPU only")
        elif check.left() < need:
            check.verdict(name, "-", "SKIP", f"{check.left():.0f} s left", f"needs about {need} s")
        else:
            began = time.perf_counter()
            try:
                stage(check)
            except subprocess.TimeoutExpired:
                check.verdict(name, "-", "FAIL", "ran out of the budget", f"{need} s expected")
            print(f"[gpu_check] {name}: {time.perf_counter() - began:.1f} s", flush=True)
        check.write()
    return 1 if any(r["result"] == "FAIL" for r in check.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
