"""Training throughput: resablate's Lightning path against a bare PyTorch loop, same model, data, optimizer, precision.

    python benchmarks/throughput.py --device cpu --steps 30
    python benchmarks/throughput.py --device cuda --json benchmarks/results/h100.json

For each model (ResNet-20/56/110 of R1 section 4.2 on 32x32 images; ResNet-50 of R1 Table 1 at 224x224 on a GPU) and
each precision, in one process:

(a) resablate: `ResNetModule` trained by the `pl.Trainer` that `resablate/app/trainer.build_trainer` builds for training
    (MetricsLogger, no progress bar, no model summary, no sanity validation, `log_every_n_steps` and
    `val_check_interval` as configured, `cudnn.benchmark` on a GPU), on a `SyntheticData` module: uint8 images held on
    the device, batches as index slices, mean subtraction and pad-crop-flip on the device (`resablate/data/base.py`).
    Checkpointing is off: it is I/O every 500 steps, not per-step speed. ResNet-50 gets the same in-memory path at
    224x224 (ImageNet's DataLoader is not measured).
(b) bare: the same network object, the same uint8 tensors on the device and mean image, batches from `TensorBatches`,
    `random_pad_crop_flip`, the optimizer of `ResNetModule.configure_optimizers`, `zero_grad(set_to_none=True)`, and
    `torch.autocast(bf16)` around forward and loss for bf16-mixed (as Lightning's MixedPrecision does).

Interleaving: both run in one Lightning fit. After `--warmup` untimed iterations of each, a callback takes turns every
`--chunk` iterations: it times the `chunk` Lightning iterations since its last turn (fetch, augmentation, forward,
backward, optimizer step, every hook and logger), then runs and times `chunk` bare iterations. The bare turn runs in
the callback before a batch's training step, outside Lightning's autocast and outside the Lightning interval. So a busy
spell of a shared machine hits both paths alike. The device is synchronised at each turn only (hence a larger chunk on
a GPU, where a sync stalls the queue). images/s are medians over the chunks (`*_mean`: totals, rare costs included);
ratio = resablate_ips / bare_ips.

mfu = images/s x 3 x (forward multiply-adds per image, `count_macs`) / (peak multiply-adds/s). The factor 3: the
backward pass costs two forward passes (input and weight gradients). Peak: on a GPU, the datasheet's dense tensor-core
rate for the precision (bf16 for bf16-mixed; TF32 for 32-true, since cuDNN runs fp32 convolutions in TF32 by default,
`torch.backends.cudnn.allow_tf32`); on a CPU, the best rate of a large 3x3 convolution in that dtype measured here
(`cpu_peak_macs`: an achievable peak; on this 2-core EPYC about 235 GMAC/s fp32 and 470 bf16, i.e. two cores x two
512-bit FMA units at about 3.7 GHz, doubled by AVX512-BF16). `--peak-tflops` overrides both.

time_64k_s: R1's CIFAR schedule, 64k iterations at batch 128, at the measured resablate rate (64000 x 128 / images/s).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
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

from resablate.app.hardware import choose_channels_last, cpu_info, detect
from resablate.app.module import ResNetModule
from resablate.app.trainer import MetricsLogger, build_trainer, uses_warmup
from resablate.data import SyntheticData, TensorBatches, random_pad_crop_flip
from resablate.models import build_network, count_macs

ROOT = Path(__file__).resolve().parent.parent

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
_CPU_PEAKS: dict[torch.dtype, float] = {}


def cpu_peak_macs(dtype: torch.dtype, repeats: int = 5) -> float:
    """Multiply-adds/s of the fastest large 3x3 convolution (256 -> 256 channels, 32x32 maps, batch 16, NHWC) in `dtype`
    on this CPU: an achievable peak through oneDNN, the library that runs the networks' convolutions. (A matrix product
    is no yardstick here: fp32 `mm` goes through MKL, which on this AMD CPU reaches 96 GMAC/s where oneDNN's fp32
    convolutions reach 235.) Measured anew at each call, and the best rate of the process kept: on a shared machine a
    busy spell only ever lowers a measurement."""
    n, c, hw = 16, 256, 32
    x = torch.randn(n, c, hw, hw).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    F.conv2d(x, w, padding=1)  # warm-up: oneDNN builds its kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        F.conv2d(x, w, padding=1)
        best = min(best, time.perf_counter() - start)
    _CPU_PEAKS[dtype] = max(_CPU_PEAKS.get(dtype, 0.0), n * c * c * 9 * hw * hw / best)
    return _CPU_PEAKS[dtype]


def peak_macs(device: torch.device, precision: str, override_tflops: float | None) -> tuple[float | None, str]:
    """(peak multiply-adds/s, where the number comes from) for `precision` on `device`."""
    if override_tflops is not None:
        return override_tflops * 1e12 / 2, f"--peak-tflops {override_tflops}"
    if device.type == "cpu":
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
        return cpu_peak_macs(dtype), f"measured 3x3 conv, 256 channels, {str(dtype).removeprefix('torch.')}"
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


def recipe_for(model: Model, batch: int) -> dict:
    recipe = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "recipe" / f"{model.recipe}.yaml"))
    return {**recipe, "batch_size": batch}


def forever(batches):
    while True:
        yield from batches


class Interleave(pl.Callback):
    """Inside the Lightning fit: after `warmup` iterations, every `chunk` iterations, time the `chunk` Lightning
    iterations since the last turn, then run and time `chunk` bare iterations. The bare turn sits between two Lightning
    iterations and outside them (the hook runs before the batch's training step, outside autocast), so neither path
    pays for the other; the device is synchronised at each turn only."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.lightning: list[float] = []  # seconds per chunk
        self.bare: list[float] = []
        self.mark: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        b = self.bench
        step = trainer.global_step
        if step < b.warmup or (step - b.warmup) % b.chunk:
            return
        synchronize(b.device)
        if self.mark is not None:
            self.lightning.append(time.perf_counter() - self.mark)
        else:
            b.start_bare(trainer)
        if len(self.bare) < b.chunks:
            self.bare.append(b.bare_iterations(b.chunk))
        self.mark = time.perf_counter()


class Bench:
    """One model at one precision: the shared network and data module, and the two ways of training them."""

    def __init__(self, name: str, precision: str, device: torch.device, batch: int, warmup: int, steps: int,
                 chunk: int, channels_last: bool, compile_net: bool, workdir: Path):
        spec = MODELS[name]
        self.name, self.precision, self.device, self.batch = name, precision, device, batch
        self.warmup, self.chunk, self.workdir = warmup, chunk, workdir
        self.chunks = -(-steps // chunk)
        self.recipe = recipe_for(spec, batch)
        torch.manual_seed(0)
        net = build_network(depth=spec.depth, shortcut=spec.shortcut, num_classes=spec.num_classes,
                            image_size=spec.image_size)
        self.macs = count_macs(net, (1, 3, spec.image_size, spec.image_size))
        if compile_net:
            net = torch.compile(net)  # as train.py does for compile=true; both paths then run the compiled network
        # One epoch holds every timed iteration of both paths where that is cheap (epoch ends are rare in real runs).
        cap = 50_000 if spec.image_size <= 32 else 10_000
        samples = min(cap, batch * 2 * (warmup + self.chunks * chunk + 2))
        self.data = SyntheticData(batch_size=batch, num_samples=samples, image_size=spec.image_size, in_channels=3,
                                  num_classes=spec.num_classes, augment=True, seed=0)
        warmup = uses_warmup(self.recipe["warmup"], spec.depth)
        self.module = ResNetModule(net, self.recipe, self.recipe["max_steps"], warmup,
                                   log_every=TRAINER_DEFAULTS.log_every_n_steps, channels_last=channels_last)

    def run(self) -> tuple[list[float], list[float]]:
        """Seconds per chunk of (a) resablate's Lightning path and (b) the bare loop, interleaved in one fit."""
        clock = Interleave(self)
        metrics = MetricsLogger(self.workdir)
        trainer = build_trainer(  # as training builds it, minus checkpoints, evaluation and W&B
            TRAINER_DEFAULTS, precision=self.precision, strategy="auto",
            max_steps=self.warmup + self.chunks * self.chunk + 1,  # +1: the last turn is at the start of the last one
            eval_every=self.recipe["eval_every"], loggers=[metrics], callbacks=[clock], plugins=[],
            root_dir=self.workdir, accelerator=self.device.type, devices=1, limit_val_batches=0,
            enable_checkpointing=False)
        metrics.trainer = trainer
        trainer.fit(self.module, datamodule=self.data)
        return clock.lightning, clock.bare

    # ----------------------------------------------------------------------------------------------------- (b) bare
    def start_bare(self, trainer: pl.Trainer) -> None:
        """The bare loop's state, built once the data and the network are on the device; then its own warm-up."""
        source = trainer.train_dataloader  # the TensorBatches Lightning draws from: the same uint8 tensors
        batches = TensorBatches(source.images, source.labels, source.batch_size, train=True, seed=source.seed + 1)
        self.stream = forever(batches)
        self.mean = self.data.mean  # on the device, as the data module uses it
        self.generator = torch.Generator().manual_seed(0)
        self.optimizer = self.module.configure_optimizers()  # Lightning's optimizer: same class, same settings
        self.bare_iterations(self.warmup)

    def bare_iterations(self, iterations: int) -> float:
        """`iterations` steps of an idiomatic PyTorch loop; the seconds they took."""
        model, optimizer, memory_format = self.module.net, self.optimizer, self.module.memory_format
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16-mixed"
                    else nullcontext())
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(iterations):
            images, labels = next(self.stream)
            x = images.float().div_(255).sub_(self.mean)  # (N, C, H, W) in [0, 1] minus the mean image
            x = random_pad_crop_flip(x, self.generator).contiguous(memory_format=memory_format)
            with autocast:
                loss = F.cross_entropy(model(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(self.device)
        return time.perf_counter() - start


# -------------------------------------------------------------------------------------------------------------- main
def measure(args, name: str, precision: str, device: torch.device, workdir: Path, channels_last: bool) -> dict:
    bench = Bench(name, precision, device, args.batch, args.warmup, args.steps, args.chunk, channels_last,
                  args.compile, workdir)
    ours, bare = bench.run()
    images = bench.chunk * bench.batch
    ours_ips, bare_ips = [images / t for t in ours], [images / t for t in bare]
    resablate_ips, bare_median = statistics.median(ours_ips), statistics.median(bare_ips)
    peak_macs(device, precision, args.peak_tflops)  # on a CPU: one more chance at an unloaded measurement
    achieved = resablate_ips * 3 * bench.macs
    return {
        "model": name,
        "precision": precision,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "batch": args.batch,
        "resablate_ips": round(resablate_ips, 1),
        "bare_ips": round(bare_median, 1),
        "ratio": round(resablate_ips / bare_median, 4),
        "mfu": None,  # set by add_mfu once the best peak of the run is known
        "time_64k_s": round(SCHEDULE_STEPS * SCHEDULE_BATCH / resablate_ips, 1),
        "macs_per_image": bench.macs,
        "achieved_macs_per_s": achieved,
        "peak_macs_per_s": None,
        "peak_source": None,
        # totals over all chunks (rare costs included, and every busy spell of a shared machine)
        "resablate_ips_mean": round(len(ours) * images / sum(ours), 1),
        "bare_ips_mean": round(len(bare) * images / sum(bare), 1),
        "resablate_ips_chunks": [round(v, 1) for v in ours_ips],
        "bare_ips_chunks": [round(v, 1) for v in bare_ips],
        "chunk": bench.chunk,
        "chunks": bench.chunks,
        "warmup": args.warmup,
        "channels_last": channels_last,
        "compile": args.compile,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **machine(device),
    }


def machine(device: torch.device) -> dict:
    """What a figure holds for: the device's name, its vector ISA and whether bf16 is native there."""
    found = detect(device.type)
    return {"device_detail": found.describe(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": found.native_bf16}


def layouts(args, device: torch.device, precision: str) -> list[bool]:
    """The memory formats to measure: what channels_last=auto picks for this device and precision, or as asked."""
    if args.channels_last == "both":
        return [False, True]
    if args.channels_last == "auto":
        return [bool(choose_channels_last("auto", detect(device.type), precision).value)]
    return [args.channels_last == "on"]


def add_mfu(rows: list[dict], device: torch.device, override_tflops: float | None) -> None:
    for row in rows:
        peak, source = peak_macs(device, row["precision"], override_tflops)
        row.update(mfu=round(row["achieved_macs_per_s"] / peak, 6) if peak else None, peak_macs_per_s=peak,
                   peak_source=source)


def cpu_name() -> str:
    return f"{cpu_info()[0]} ({torch.get_num_threads()} threads)"


def hours(seconds: float) -> str:
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def print_table(rows: list[dict]) -> None:
    head = f"{'model':<10} {'precision':<11} {'layout':<6} {'device':<6} {'batch':>5} {'resablate img/s':>15} " \
           f"{'bare img/s':>11} {'ratio':>6} {'MFU':>6} {'64k iters':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        layout = "NHWC" if r["channels_last"] else "NCHW"
        print(f"{r['model']:<10} {r['precision']:<11} {layout:<6} {r['device']:<6} {r['batch']:>5} "
              f"{r['resablate_ips']:>15.1f} {r['bare_ips']:>11.1f} {r['ratio']:>6.3f} {mfu:>6} "
              f"{hours(r['time_64k_s']):>9}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None,
                   help="timed iterations of each path (default: 30 on a CPU, 1000 on a GPU)")
    p.add_argument("--chunk", type=int, default=None,
                   help="iterations per turn of the interleaving (default: 1 on a CPU, 50 on a GPU, where each turn "
                        "synchronises the device)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations of each path first (default 3)")
    p.add_argument("--precision", default=",".join(PRECISIONS), help=f"comma-separated, from {', '.join(PRECISIONS)}")
    p.add_argument("--models", default=None,
                   help=f"comma-separated, from {', '.join(MODELS)} (default: all; resnet50 on a GPU only)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128, R1 4.2)")
    p.add_argument("--channels-last", choices=("auto", "on", "off", "both"), default="auto",
                   help="memory format: auto (what training picks for the device and precision), on (NHWC), off "
                        "(NCHW) or both (a row each)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (both paths), as compile=true")
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
    on_gpu = args.device == "cuda"
    args.steps = args.steps if args.steps is not None else 1000 if on_gpu else 30
    args.chunk = args.chunk if args.chunk is not None else min(50 if on_gpu else 1, args.steps)
    for name in ("steps", "chunk", "batch"):
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
    device = torch.device(args.device)  # cudnn.benchmark: build_trainer sets it, as for training
    rows = []
    with tempfile.TemporaryDirectory(prefix="resablate-throughput-") as workdir:
        for name in args.model_names:
            for precision in args.precisions:
                for channels_last in layouts(args, device, precision):
                    row = measure(args, name, precision, device, Path(workdir), channels_last)
                    rows.append(row)
                    print(f"{name} {precision} {'NHWC' if channels_last else 'NCHW'}: resablate "
                          f"{row['resablate_ips']} img/s (mean {row['resablate_ips_mean']}), bare {row['bare_ips']} "
                          f"img/s (mean {row['bare_ips_mean']})", flush=True)
    add_mfu(rows, device, args.peak_tflops)
    print()
    print_table(rows)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
