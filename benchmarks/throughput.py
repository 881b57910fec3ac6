"""Training throughput: resablate's Lightning path against a bare PyTorch loop, same model, data, optimizer, precision.

    python benchmarks/throughput.py --device cpu --steps 30
    python benchmarks/throughput.py --device cuda --steps 200 --json benchmarks/results/h100.json

For each model (ResNet-20/56/110 of R1 section 4.2 on 32x32 images; ResNet-50 of R1 Table 1 at 224x224 on a GPU) and
each precision, in one process and interleaved (a, b, a, b, ...):

(a) resablate: `ResNetModule` trained by a `pl.Trainer` set up as `resablate/train.py` sets it up (MetricsLogger, no
    progress bar, no model summary, no sanity validation, `log_every_n_steps` and `val_check_interval` as configured,
    `cudnn.benchmark` on a GPU), on a `SyntheticData` module: uint8 images held on the device, batches as index slices,
    mean subtraction and pad-crop-flip on the device (`resablate/data/base.py`). Checkpointing is off: it is I/O every
    500 steps, not per-step speed.
(b) bare: the same network object, the same uint8 tensors and mean image, the same `TensorBatches` and `pad_crop_flip`,
    a fresh SGD with the recipe's hyperparameters, `zero_grad(set_to_none=True)`, `torch.autocast(bf16)` around forward
    and loss for bf16-mixed (as Lightning's MixedPrecision does).

Each measurement runs `--warmup` untimed steps, then times `--steps` full iterations (fetch, augmentation, forward,
backward, optimizer step, hooks, logging): from the start of iteration `warmup` to the start of iteration
`warmup + steps`, with a device synchronisation at both ends only. images/s are medians over `--repeats` pairs;
ratio = resablate_ips / bare_ips.

mfu = images/s x 3 x (forward multiply-adds per image, `count_macs`) / (peak multiply-adds/s). The factor 3: the
backward pass costs two forward passes (input and weight gradients). Peak: on a GPU, the datasheet's dense tensor-core
rate for the precision (bf16 for bf16-mixed; TF32 for 32-true, since cuDNN runs fp32 convolutions in TF32 by default,
`torch.backends.cudnn.allow_tf32`); on a CPU, the best rate of a 2048x2048 matrix product in that dtype measured here,
i.e. an achievable peak, not the vendor's. `--peak-tflops` overrides both.

time_64k_s: R1's CIFAR schedule, 64k iterations at batch 128, at the measured resablate rate (64000 x 128 / images/s).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from resablate.data import SyntheticData, random_pad_crop_flip  # noqa: E402
from resablate.models import build_network, count_macs  # noqa: E402
from resablate.module import ResNetModule  # noqa: E402
from resablate.records import MetricsLogger  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed")
SCHEDULE_STEPS, SCHEDULE_BATCH = 64000, 128  # R1 4.2: 64k iterations at batch 128


@dataclass(frozen=True)
class Model:
    depth: int
    shortcut: str  # R1: option A on CIFAR, option B for ImageNet ResNet-50
    image_size: int
    num_classes: int
    recipe: str
    gpu_only: bool = False


MODELS = {
    "resnet20": Model(20, "zero_pad", 32, 10, "cifar_paper"),
    "resnet56": Model(56, "zero_pad", 32, 10, "cifar_paper"),
    "resnet110": Model(110, "zero_pad", 32, 10, "cifar_paper"),
    "resnet50": Model(50, "projection", 224, 1000, "imagenet_paper", gpu_only=True),
}

# Dense (no sparsity) peak TFLOPS from NVIDIA's datasheets: (bf16, tf32). The H200 has the H100 SXM's compute.
GPU_PEAK_TFLOPS = {
    "H100 PCIe": (756.0, 378.0),
    "H100 NVL": (835.0, 418.0),
    "H100": (989.4, 494.7),
    "H200": (989.4, 494.7),
    "A100": (312.0, 156.0),
}

TRAINER_DEFAULTS = OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml")


# ------------------------------------------------------------------------------------------------------------- peaks
def cpu_peak_macs(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Multiply-adds/s of the fastest of `repeats` n x n matrix products in `dtype` on this CPU (an achievable peak)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: oneDNN picks its kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return n**3 / best


def peak_macs(device: torch.device, precision: str, override_tflops: float | None) -> tuple[float | None, str]:
    """(peak multiply-adds/s, where the number comes from) for `precision` on `device`."""
    if override_tflops is not None:
        return override_tflops * 1e12 / 2, f"--peak-tflops {override_tflops}"
    if device.type == "cpu":
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
        return cpu_peak_macs(dtype), f"measured 2048x2048 {str(dtype).removeprefix('torch.')} matmul"
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32) in GPU_PEAK_TFLOPS.items():  # the first key found in the name: "H100 PCIe" before "H100"
        if key in name:
            tflops = bf16 if precision.startswith("bf16") else tf32
            kind = "bf16" if precision.startswith("bf16") else "tf32"
            return tflops * 1e12 / 2, f"{name} datasheet, dense {kind} {tflops} TFLOPS"
    return None, f"{name}: no datasheet peak known (pass --peak-tflops)"


# ----------------------------------------------------------------------------------------------------------- helpers
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class IterationClock(pl.Callback):
    """Perf-counter times at the start of iterations `start` and `stop` (the device synchronised first)."""

    def __init__(self, start: int, stop: int, device: torch.device):
        self.start, self.stop, self.device = start, stop, device
        self.times: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step in (self.start, self.stop):
            synchronize(self.device)
            self.times[trainer.global_step] = time.perf_counter()

    def seconds(self) -> float:
        return self.times[self.stop] - self.times[self.start]


def recipe_for(model: Model, batch: int) -> dict:
    recipe = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "recipe" / f"{model.recipe}.yaml"))
    return {**recipe, "batch_size": batch}


class Bench:
    """One model at one precision: the shared network, data module, and the two ways of training them."""

    def __init__(self, name: str, precision: str, device: torch.device, batch: int, warmup: int, steps: int,
                 channels_last: bool, workdir: Path):
        spec = MODELS[name]
        self.name, self.precision, self.device, self.batch = name, precision, device, batch
        self.warmup, self.steps, self.workdir = warmup, steps, workdir
        self.recipe = recipe_for(spec, batch)
        torch.manual_seed(0)
        net = build_network(depth=spec.depth, shortcut=spec.shortcut, num_classes=spec.num_classes,
                            image_size=spec.image_size)
        self.macs = count_macs(net, (1, 3, spec.image_size, spec.image_size))
        # One epoch holds every timed iteration when it fits in memory cheaply (epoch ends are rare in real runs too).
        cap = 50_000 if spec.image_size <= 32 else 10_000
        samples = min(cap, batch * (warmup + steps + 2))
        self.data = SyntheticData(batch_size=batch, num_samples=samples, image_size=spec.image_size, in_channels=3,
                                  num_classes=spec.num_classes, augment=True, seed=0)
        warmup_on = self.recipe["warmup"] == "on" or (self.recipe["warmup"] == "auto" and spec.depth >= 110)
        self.module = ResNetModule(net, self.recipe, self.recipe["max_steps"], warmup_on,
                                   log_every=TRAINER_DEFAULTS.log_every_n_steps, channels_last=channels_last)
        self.memory_format = self.module.memory_format

    # ------------------------------------------------------------------------------------------------ (a) resablate
    def run_resablate(self) -> float:
        clock = IterationClock(self.warmup, self.warmup + self.steps, self.device)
        metrics = MetricsLogger(self.workdir)
        trainer = pl.Trainer(  # as resablate/train.py builds it, minus checkpoints and W&B
            accelerator=self.device.type,
            devices=1,
            precision=self.precision,
            max_steps=self.warmup + self.steps + 1,  # +1: the clock stops at the start of the last one
            max_epochs=-1,
            val_check_interval=self.recipe["eval_every"],
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            limit_val_batches=0,  # no evaluation at the end of these short fits
            log_every_n_steps=TRAINER_DEFAULTS.log_every_n_steps,
            deterministic=False,
            logger=[metrics],
            callbacks=[clock],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=self.workdir,
        )
        metrics.trainer = trainer
        trainer.fit(self.module, datamodule=self.data)
        return self.steps * self.batch / clock.seconds()

    # ----------------------------------------------------------------------------------------------------- (b) bare
    def run_bare(self) -> float:
        """An idiomatic PyTorch loop over the data module's tensors (already on the device after a resablate run)."""
        model = self.module.net.to(self.device)
        model.train()
        r = self.recipe
        optimizer = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r["momentum"],
                                    weight_decay=r["weight_decay"], nesterov=r["nesterov"])
        batches = self.data.train_dataloader()  # the same TensorBatches over the same uint8 tensors
        mean = self.data.mean.to(self.device)
        generator = torch.Generator().manual_seed(0)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16-mixed"
                    else nullcontext())
        stream = forever(batches)
        start = 0.0
        for i in range(self.warmup + self.steps):
            if i == self.warmup:
                synchronize(self.device)
                start = time.perf_counter()
            images, labels = next(stream)
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            x = images.float().div_(255).sub_(mean)  # (N, C, H, W) in [0, 1] minus the mean image
            x = random_pad_crop_flip(x, generator).contiguous(memory_format=self.memory_format)
            with autocast:
                loss = F.cross_entropy(model(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(self.device)
        return self.steps * self.batch / (time.perf_counter() - start)


def forever(batches):
    while True:
        yield from batches


# -------------------------------------------------------------------------------------------------------------- main
def measure(args, name: str, precision: str, device: torch.device, workdir: Path) -> dict:
    bench = Bench(name, precision, device, args.batch, args.warmup, args.steps, not args.no_channels_last, workdir)
    ours, bare = [], []
    for _ in range(args.repeats):  # interleaved: a slow spell of a shared machine hits both sides
        ours.append(bench.run_resablate())
        bare.append(bench.run_bare())
    resablate_ips, bare_ips = statistics.median(ours), statistics.median(bare)
    peak, peak_source = peak_macs(device, precision, args.peak_tflops)
    achieved = resablate_ips * 3 * bench.macs
    return {
        "model": name,
        "precision": precision,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "batch": args.batch,
        "resablate_ips": round(resablate_ips, 1),
        "bare_ips": round(bare_ips, 1),
        "ratio": round(resablate_ips / bare_ips, 4),
        "mfu": round(achieved / peak, 4) if peak else None,
        "time_64k_s": round(SCHEDULE_STEPS * SCHEDULE_BATCH / resablate_ips, 1),
        "macs_per_image": bench.macs,
        "achieved_macs_per_s": achieved,
        "peak_macs_per_s": peak,
        "peak_source": peak_source,
        "resablate_ips_runs": [round(v, 1) for v in ours],
        "bare_ips_runs": [round(v, 1) for v in bare],
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "channels_last": not args.no_channels_last,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"cpu ({torch.get_num_threads()} threads)"


def hours(seconds: float) -> str:
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def print_table(rows: list[dict]) -> None:
    head = f"{'model':<10} {'precision':<11} {'device':<6} {'batch':>5} {'resablate img/s':>15} {'bare img/s':>11} " \
           f"{'ratio':>6} {'MFU':>6} {'64k iters':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(f"{r['model']:<10} {r['precision']:<11} {r['device']:<6} {r['batch']:>5} {r['resablate_ips']:>15.1f} "
              f"{r['bare_ips']:>11.1f} {r['ratio']:>6.3f} {mfu:>6} {hours(r['time_64k_s']):>9}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=30, help="timed iterations per measurement (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations before each measurement (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved (resablate, bare) pairs; medians reported")
    p.add_argument("--precision", default=",".join(PRECISIONS), help=f"comma-separated, from {', '.join(PRECISIONS)}")
    p.add_argument("--models", default=None,
                   help=f"comma-separated, from {', '.join(MODELS)} (default: all; resnet50 on a GPU only)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128, R1 4.2)")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW instead of the default channels_last")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's peak TFLOPS for the MFU column")
    p.add_argument("--json", type=Path, default=None, help="write the rows as a JSON list to this path")
    args = p.parse_args(argv)
    precisions = [s.strip() for s in args.precision.split(",") if s.strip()]
    for value in precisions:
        if value not in PRECISIONS:
            p.error(f"--precision {value!r} is not valid; valid: {', '.join(PRECISIONS)}")
    default_models = [m for m, spec in MODELS.items() if args.device == "cuda" or not spec.gpu_only]
    models = [s.strip() for s in args.models.split(",") if s.strip()] if args.models else default_models
    for value in models:
        if value not in MODELS:
            p.error(f"--models {value!r} is not valid; valid: {', '.join(MODELS)}")
    for name in ("steps", "repeats", "batch"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} {getattr(args, name)} must be > 0")
    if args.warmup < 1:
        p.error(f"--warmup {args.warmup} must be >= 1 (the first iteration builds kernels and caches)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to PyTorch; valid here: cpu")
    args.precisions, args.model_names = precisions, models
    return args


def quiet_lightning() -> None:
    """Each measurement builds a Trainer: keep its start-up banners and small-run warnings out of the table."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(log_every_n_steps|smaller than the logging interval).*")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    quiet_lightning()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train.py does when not deterministic
    rows = []
    with tempfile.TemporaryDirectory(prefix="resablate-throughput-") as workdir:
        for name in args.model_names:
            for precision in args.precisions:
                row = measure(args, name, precision, device, Path(workdir))
                rows.append(row)
                print(f"{name} {precision}: resablate {row['resablate_ips_runs']} img/s, bare {row['bare_ips_runs']} "
                      f"img/s", flush=True)
    print()
    print_table(rows)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
