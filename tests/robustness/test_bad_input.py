"""Wrong input, answered before any training: a non-zero exit status, one error line naming the value (and what is
valid), no traceback, and no run folder left behind (or none holding checkpoints or a summary).

Errors of ours print `resablate: error: <one line>` (status 2), the Optuna sweeper's refusals `Optuna sweeper: <one
line>` (status 2). Errors Hydra finds while parsing or merging an override (a value of the wrong type, a bad sweep
grammar) keep Hydra's form, whose first line names the override (status 1). Most cases run the app in this process; a
few run it as a user would, as subprocesses side by side, to check the console and the exit status exactly.
"""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from tests.robustness.conftest import TINY, start


def write_cifar(root, damaged: str | None = None, missing: str | None = None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"):
        if name != missing:
            (folder / name).write_bytes(b"\x80\x02}q\x00.")  # an empty pickled dict; `damaged` gets garbage
    if damaged:
        (folder / damaged).write_bytes(b"\x80\x02}q\x00(X\x04\x00\x00\x00data")  # cut off mid-pickle
    return root


def write_fashion(root, truncate: str | None = None, scramble: str | None = None, label: int | None = None):
    """Fashion-MNIST's four idx.gz files with 40 training and 12 test images; `truncate` cuts one short (a download
    cut short), `scramble` overwrites bytes in the middle of one (its header and length intact), `label` puts one
    training label of that value."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 12)):
        for kind, magic, shape in (("images", 2051, (n, 28, 28)), ("labels", 2049, (n,))):
            array = rng.integers(0, 10 if kind == "labels" else 256, shape, dtype=np.uint8)
            if kind == "labels" and split == "train" and label is not None:
                array[7] = label
            path = root / f"{split}-{kind}-idx{len(shape)}-ubyte.gz"
            with gzip.open(path, "wb") as f:
                f.write(struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape) + array.tobytes())
            if path.name == truncate:
                path.write_bytes(path.read_bytes()[:-40])
            if path.name == scramble:
                data = bytearray(path.read_bytes())
                middle = len(data) // 2
                data[middle : middle + 64] = bytes(64)  # a bad disk block: the gzip CRC no longer matches
                path.write_bytes(bytes(data))
    return root


DATA = [a for a in TINY if not a.startswith("data")]  # for the cases that choose another data set

# (arguments, what the error line must say, exit status); {tmp} is the test's folder, {file} a regular file in it.
CASES = [
    (["shortcut=foo"], "resablate: error: shortcut=foo is not an option; valid: A, B, C, constant_scale", 2),
    (["block=nope"], "resablate: error: block=nope is not an option; valid: auto, basic, bottleneck", 2),
    (["data=cifar100"], "resablate: error: data=cifar100 is not an option; valid: cifar10, fashion_mnist", 2),
    (["recipe=adam"], "resablate: error: recipe=adam is not an option; valid: cifar_paper, imagenet_paper, quick", 2),
    (["trainer=tpu"], "resablate: error: trainer=tpu is not an option; valid: ddp, ddp_spawn, default", 2),
    (["depht=20"], "resablate: error: unknown key 'depht'; did you mean 'depth'?", 2),
    (["depth=35"], "resablate: error: depth 35 with block basic/bottleneck: not 6n+2 (basic) or 9n+2", 2),
    (["depth=0"], "resablate: error: depth 0 with block basic/bottleneck", 2),
    (["depth=-4"], "resablate: error: depth -4 with block basic/bottleneck", 2),
    (["block=bottleneck", "depth=14"], "resablate: error: depth 14 with block bottleneck: not 9n+2", 2),
    (["recipe.batch_size=0"], "resablate: error: recipe.batch_size=0 must be > 0", 2),
    (["recipe.batch_size=-8"], "resablate: error: recipe.batch_size=-8 must be > 0", 2),
    (["recipe.lr=0"], "resablate: error: recipe.lr=0.0 must be > 0", 2),
    (["recipe.lr=-1"], "resablate: error: recipe.lr=-1.0 must be > 0", 2),
    (["recipe.lr=nan"], "resablate: error: recipe.lr=nan must be a finite number > 0", 2),
    (["recipe.weight_decay=inf"], "resablate: error: recipe.weight_decay=inf must be a finite number >= 0", 2),
    (["recipe.gamma=nan"], "resablate: error: recipe.gamma=nan must be a finite number > 0", 2),
    (["trainer.max_steps=0"], "resablate: error: trainer.max_steps=0 must be > 0", 2),
    (["recipe.max_steps=-5"], "resablate: error: recipe.max_steps=-5 must be > 0", 2),
    (["recipe.momentum=1.5"], "resablate: error: recipe.momentum=1.5 must be in [0, 1)", 2),
    (["recipe.milestones=[500,100]"], "resablate: error: recipe.milestones=[500, 100] must increase", 2),
    (["model.widths=[16,32]"], "resablate: error: widths=[16, 32] must be 3 positive numbers, one per stage", 2),
    (["model.stage_depths=[2,2]", "model.widths=[16,32,64]"],
     "resablate: error: widths=[16, 32, 64] must be 2 positive numbers, one per stage (stage_depths=[2, 2])", 2),
    (["model.stage_depths=[1,0,1]"], "resablate: error: stage_depths=[1, 0, 1] must be a non-empty list", 2),
    (["model.width_multiplier=0"], "resablate: error: width_multiplier=0.0 must be > 0", 2),
    (["shortcut=dropout_shortcut", "shortcut.p=1.5"], "dropout_shortcut p=1.5 is not a probability in [0, 1)", 2),
    (["trainer.precision=fp8"], "resablate: error: trainer.precision='fp8' is not valid; valid: auto, 32-true, 32", 2),
    (["trainer.devices=0"], "resablate: error: trainer.devices=0 must be > 0", 2),
    (["trainer.threads=0"], "resablate: error: trainer.threads=0 is not valid; valid: auto, or a whole number >= 1", 2),
    (["trainer.threads=many"], "resablate: error: trainer.threads='many' is not valid; valid: auto, or a whole", 2),
    (["channels_last=maybe"], "resablate: error: channels_last='maybe' is not valid; valid: auto, true, false", 2),
    (["trainer.accelerator=tpu9"], "resablate: error: trainer.accelerator='tpu9' is not valid; valid: auto, gpu", 2),
    (["trainer.strategy=dpp"], "resablate: error: trainer.strategy='dpp' is not valid; valid: auto, ddp, ddp_spawn", 2),
    (["trainer.num_nodes=0"], "resablate: error: trainer.num_nodes=0 must be > 0", 2),
    (["trainer.checkpoint_every_n_steps=-1"], "resablate: error: trainer.checkpoint_every_n_steps=-1 must be > 0", 2),
    (["objective=[]"], "resablate: error: objective=[] is not valid; valid: auto, one of val_error", 2),
    (["-m", "hydra/launcher=side_by_side", "hydra.launcher.n_jobs=0", "seed=1,2"],
     "resablate: error: hydra.launcher.n_jobs=0 runs no job; valid: a number of jobs side by side >= 1", 2),
    (["objective=val_acc"], "resablate: error: objective 'val_acc' is not valid; valid: auto, val_error", 2),
    (["seed=-1"], "resablate: error: seed=-1 is not valid; valid: a whole number in [0, 4294967295]", 2),
    (["seed=5000000000"], "resablate: error: seed=5000000000 is not valid; valid: a whole number in [0, 4294967295]",
     2),
    (["~depth"], "resablate: error: depth was deleted (~depth), but every run needs it: give it a value instead", 2),
    (["data.augment=no"], "resablate: error: data.augment='no' is not valid; valid: true, false", 2),
    (["data.download=no"], "resablate: error: data.download='no' is not valid; valid: true, false", 2),
    (["data.num_samples=many"], "resablate: error: data.num_samples='many' is not valid; it must be a whole number", 2),
    (["shortcut=highway", "shortcut.gate_bias=nan"], "resablate: error: shortcut.gate_bias=nan must be a finite", 2),
    (["shortcut=highway", "shortcut.gate_bias=inf"], "resablate: error: shortcut.gate_bias=inf must be a finite", 2),
    (["recipe.warmup=on", "recipe.warmup_lr=nan"], "resablate: error: recipe.warmup_lr=nan must be a finite number", 2),
    (["recipe=quick", "recipe.warmup=linear", "recipe.warmup_steps=1200"],
     "resablate: error: recipe.warmup_steps=1200 must be below recipe.max_steps=1200 with recipe.warmup=linear", 2),
    (["recipe.momentum=0", "recipe.nesterov=true"],
     "resablate: error: recipe.nesterov=true needs recipe.momentum > 0 (it is 0.0)", 2),
    (["recipe.batch_size=512"], "resablate: error: batch_size=512 must be <= 256, the number of training images", 2),
    (["trainer=ddp", "trainer.devices=3"],
     "resablate: error: recipe.batch_size=16 does not divide over trainer.devices=3 x trainer.num_nodes=1 = 3", 2),
    (["trainer=ddp", "trainer.num_nodes=2"],
     "resablate: error: trainer.num_nodes=2, but nothing here starts the other nodes: no node would ever join", 2),
    (["trainer.accelerator=tpu"], "resablate: error: trainer.accelerator=tpu, but this machine has no TPU; available "
     "here: auto, cpu", 2),
    (["trainer.accelerator=mps"], "resablate: error: trainer.accelerator=mps, but this machine has no MPS", 2),
    (["trainer.precision=16-mixed"], "resablate: error: trainer.precision=16-mixed needs a CUDA GPU (Lightning would "
     "run bf16 on a CPU instead", 2),
    (["trainer=ddp", "+trainer.sync_batchnorm=true", "trainer.accelerator=cpu"], "resablate: error: "
     "trainer.sync_batchnorm=true needs CUDA GPUs (torch's SyncBatchNorm runs on CUDA only", 2),
    (["+sweep=nope"], "resablate: error: sweep=nope is not an option; valid: arch_search, constructed, degradation, "
     "demo, fig1", 2),
    (["data.val_size=300"], "resablate: error: data: val_size=300 must be < 256, the number of synthetic training", 2),
    ([*DATA, "data=imagenet"], "resablate: error: data.root has no value and no default: set data.root=... on", 2),
    ([*DATA, "data=cifar10", "data.root={tmp}/nothing", "data.download=false"],
     "resablate: error: CIFAR-10 not found under {tmp}/nothing", 2),
    ([*DATA, "data=cifar10", "data.root={tmp}/cifar_partial", "data.download=false"],
     "cifar-10-batches-py/ is there but lacks data_batch_3", 2),
    ([*DATA, "data=cifar10", "data.root={tmp}/cifar_damaged", "data.download=false"],
     "resablate: error: {tmp}/cifar_damaged/cifar-10-batches-py/data_batch_2 is not a readable CIFAR-10 batch", 2),
    ([*DATA, "data=fashion_mnist", "data.root={tmp}/fashion_cut", "data.download=false"],
     "resablate: error: {tmp}/fashion_cut/train-images-idx3-ubyte.gz is truncated or damaged", 2),
    ([*DATA, "data=fashion_mnist", "data.root={tmp}/fashion_scrambled", "data.download=false"],
     "resablate: error: {tmp}/fashion_scrambled/train-images-idx3-ubyte.gz is not a readable gzipped idx file", 2),
    ([*DATA, "data=fashion_mnist", "data.root={tmp}/fashion_label", "data.download=false"],
     "resablate: error: {tmp}/fashion_label/train-labels-idx1-ubyte.gz has labels outside 0..9", 2),
    (["hydra.run.dir={file}/run"], "resablate: error: hydra.run.dir={file}/run cannot be a folder: {file} is a file",
     2),
    (["-m", "hydra.sweep.dir={file}/sweep", "seed=1,2"],
     "resablate: error: hydra.sweep.dir={file}/sweep cannot be a folder: {file} is a file", 2),
    # Output folders that cannot be made, however the key is written.
    (["++hydra.run.dir={file}/run"], "resablate: error: hydra.run.dir={file}/run cannot be a folder: {file} is a file",
     2),
    (["-m", "seed=1,2", "++hydra.sweep.dir={file}/sweep"],
     "resablate: error: hydra.sweep.dir={file}/sweep cannot be a folder: {file} is a file", 2),
    (["hydra.run.dir=/proc/resablate-none/run"], "resablate: error: hydra.run.dir=/proc/resablate-none/run cannot be "
     "made: No such file or directory (/proc/resablate-none)", 2),
    (["-m", "seed=1,2", "+hydra.sweep.dir=/proc/resablate-none"], "resablate: error: hydra.sweep.dir=/proc/resablate-"
     "none cannot be made: No such file or directory (/proc/resablate-none)", 2),
    # Characters: outside ASCII Hydra's grammar needs quotes; a byte that is not UTF-8 cannot be recorded.
    (["data.root={tmp}/Müller"], "resablate: error: data.root={tmp}/Müller: Hydra's override grammar takes "
     "characters outside ASCII only inside quotes; write data.root='{tmp}/Müller'", 2),
    (["hydra.run.dir={tmp}/ü/run"], "resablate: error: hydra.run.dir={tmp}/ü/run: Hydra's override grammar takes "
     "characters outside ASCII only inside quotes; write hydra.run.dir='{tmp}/ü/run'", 2),
    (["data.root='{tmp}/\udcff'"], "resablate: error: data.root='{tmp}/\\xff': byte 0xff is not UTF-8", 2),
    (["-m", "seed=1,2", "hydra.sweep.dir={tmp}/\udcfe"], "resablate: error: hydra.sweep.dir={tmp}/\\xfe: byte 0xfe "
     "is not UTF-8", 2),
    (["-m", "shortcut=zero_pad,projection,projektion"], "resablate: error: shortcut=projektion is not an option", 2),
    # Under -m: refused before the first job, in one line, whatever the job that cannot run.
    (["-m", *DATA, "data=cifar10", "data.root={tmp}/nothing", "data.download=false", "shortcut=projection"],
     "resablate: error: job 0 of the sweep (", 2),
    (["-m", *DATA, "data=cifar10", "data.root={tmp}/nothing", "data.download=false", "depth=8,14"],
     "CIFAR-10 not found under {tmp}/nothing", 2),
    (["-m", "depth=8,35"], "resablate: error: job 1 of the sweep (", 2),
    (["-m", "seed=1,2", "hydra.sweep.subdir=same"],
     "resablate: error: hydra.sweep.subdir=same is one folder for all 2 jobs of the sweep", 2),
    (["-m", "hydra/sweeper=grids", "seed=1,2", "depth=8,14", "hydra.sweep.subdir=same"],
     "resablate: error: hydra.sweep.subdir=same is one folder for all 4 jobs of the sweep", 2),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.params.depth=choice(8,14)",
      "objective=[val_error,macs]"], "resablate: error: the sweep: objective=['val_error', 'macs'] gives 2 values "
     "per job, but hydra.sweeper.direction=minimize names 1", 2),
    (["-m", "+sweep=table6,nope"], "resablate: error: sweep=nope is not an option", 2),
    ([*DATA, "+sweep=fig1", "data.root={tmp}/nothing", "data.download=false"],
     "resablate: error: the sweep: CIFAR-10 not found under {tmp}/nothing", 2),
    ([*DATA, "+sweep=hparams", "data.root={tmp}/nothing", "data.download=false"],
     "resablate: error: the sweep: CIFAR-10 not found under {tmp}/nothing", 2),
    (["+sweep=table2"], "resablate: error: the sweep: data.root has no value and no default", 2),
    # Hydra's own checks: the first line names the override.
    (["trainer.devices=two"], "Error merging override trainer.devices=two", 1),
    (["recipe.schedule=exponential"], "Error merging override recipe.schedule=exponential", 1),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.params.depth=choise(8,14)"],
     "Error parsing override 'hydra.sweeper.params.depth=choise(8,14)'", 1),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.storage=nosuchdb://host/db"],
     "Optuna sweeper: cannot open storage 'nosuchdb://host/db'", 2),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.storage=sqlite:///{file}/optuna.db"],
     "Optuna sweeper: cannot open storage 'sqlite:///{file}/optuna.db': File exists: {file}", 2),
    # The Optuna sweeper's refusals: one line, status 2, before any job.
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=-1", "hydra.sweeper.params.depth=choice(8,14)"],
     "Optuna sweeper: n_trials must be a positive int, got -1", 2),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.params.dpeth=choice(8,14)"],
     "Optuna sweeper: a job with overrides", 2),
    # A search space with values no job can run: refused before a study exists (each end, every choice checked).
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.params.recipe.lr=interval(-1,-0.5)"],
     "resablate: error: the sweep: hydra.sweeper.params.recipe.lr=interval(-1,-0.5) can give a job that cannot run: "
     "recipe.lr=-1.0 must be > 0; no job was started and no study made", 2),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.params.recipe.lr=interval(0.01,0.2)",
      "hydra.sweeper.params.depth=choice(8,35)"],
     "resablate: error: the sweep: hydra.sweeper.params.depth=choice(8,35) can give a job that cannot run: depth 35",
     2),
]


@pytest.fixture
def bad_places(tmp_path):
    write_cifar(tmp_path / "cifar_partial", missing="data_batch_3")
    write_cifar(tmp_path / "cifar_damaged", damaged="data_batch_2")
    write_fashion(tmp_path / "fashion_cut", truncate="train-images-idx3-ubyte.gz")
    write_fashion(tmp_path / "fashion_scrambled", scramble="train-images-idx3-ubyte.gz")
    write_fashion(tmp_path / "fashion_label", label=10)
    (tmp_path / "a_file").write_text("not a folder")
    return {"tmp": str(tmp_path), "file": str(tmp_path / "a_file")}


def fill(text: str, places: dict) -> str:
    return text.replace("{tmp}", places["tmp"]).replace("{file}", places["file"])


def assert_refused(code: int, out: str, err: str, message: str, status: int, tmp_path) -> None:
    assert code == status, out[-2000:] + err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, out[-2000:]
    assert message in lines[0], lines[0]
    if status == 2:
        assert len(lines) == 1, err
    assert "Traceback" not in out + err
    assert "GPU available" not in out + err  # no Trainer was built
    left = [p for p in tmp_path.rglob("*")
            if p.name in ("summary.json", "checkpoints", "metrics.csv", ".hydra", "optuna.db", "multirun.yaml")]
    assert not left, left


CPU_ONLY = ("trainer.precision=16-mixed", "trainer.accelerator=tpu")  # valid where a CUDA GPU is


@pytest.mark.parametrize("args,message,status", CASES, ids=[" ".join(a for a in c[0] if a not in DATA) for c in CASES])
def test_bad_input_is_refused_in_one_line_before_training(in_process, tmp_path, bad_places, args, message, status):
    if set(CPU_ONLY) & set(args) and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    base = [] if any(a.startswith(("data=", "+sweep=")) for a in args) else list(TINY)
    where = [] if any(a.lstrip("+").startswith("hydra.") for a in args) else [
        f"hydra.sweep.dir={tmp_path / 'sweep'}" if "-m" in args else f"hydra.run.dir={tmp_path / 'run'}"]
    flags = [a for a in args if a.startswith("-")]
    argv = [*flags, *base, "trainer.max_steps=2", *(fill(a, bad_places) for a in args if a not in flags), *where]
    code, out, err = in_process(argv)
    assert_refused(code, out, err, fill(message, bad_places), status, tmp_path)


def test_a_quoted_folder_name_outside_ascii_is_an_ordinary_folder(in_process, tmp_path):
    code, out, err = in_process([*TINY, "trainer.max_steps=1", f"hydra.run.dir='{tmp_path}/Müller ü/run'"])
    assert code == 0, err[-2000:]
    summary = json.loads((tmp_path / "Müller ü" / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "completed"
    assert f"{tmp_path}/Müller ü/run" in out + err  # the result line names it as given


@pytest.mark.slow
def test_as_a_user_runs_it(tmp_path, bad_places):
    """Real processes, side by side: the console and the exit status exactly as a shell sees them (cases refused
    before torch is imported; the in-process table covers the rest of the same code)."""
    picked = ("shortcut=foo", "hydra.run.dir={file}/run", "trainer.devices=two",
              "hydra.sweeper.params.depth=choise(8,14)")
    cases = [case for case in CASES if any(a in picked for a in case[0])]
    assert len(cases) == len(picked)
    procs = []
    for i, (args, message, status) in enumerate(cases):
        cwd = tmp_path / f"case{i}"
        cwd.mkdir()
        flags = [a for a in args if a.startswith("-")]
        proc = start([*flags, *TINY, *(fill(a, bad_places) for a in args if a not in flags)], cwd)
        procs.append((proc, cwd, fill(message, bad_places), status))
    for proc, cwd, message, status in procs:
        out, err = proc.communicate(timeout=300)
        assert_refused(proc.returncode, out, err, message, status, cwd)
        assert not (cwd / "outputs").exists() or not any((cwd / "outputs").iterdir())


# The environment, checked within seconds before anything trains: (variables, arguments, the error line). W&B is on
# (`logger=default`); port 9 on the loopback refuses connections, as an unreachable W&B server would.
UNREACHABLE = {"WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
ENV_CASES = [
    ({"WANDB_MODE": "bogus"}, [], "resablate: error: WANDB_MODE='bogus' is not valid; valid: online, offline, "
     "disabled"),
    ({"HOME": "{file}"}, [], "resablate: error: HOME={file} is not a folder, and W&B keeps its settings under it"),
    ({}, ["logger.wandb.mode=online"], "resablate: error: logger.wandb.mode=online needs a W&B key: set WANDB_API_KEY"),
    ({"WANDB_MODE": "online"}, [], "resablate: error: WANDB_MODE=online needs a W&B key"),
    (UNREACHABLE, ["logger.wandb.mode=online"], "resablate: error: logger.wandb.mode=online, but the W&B server "
     "cannot be reached (127.0.0.1:9: Connection refused)"),
    ({"WANDB_MODE": "bogus"}, ["-m", "seed=1,2"], "resablate: error: the sweep: WANDB_MODE='bogus' is not valid"),
]


@pytest.mark.parametrize("env,args,message", ENV_CASES, ids=[f"{e} {' '.join(a)}" for e, a, _ in ENV_CASES])
def test_a_bad_environment_is_refused_in_one_line_before_training(in_process, tmp_path, bad_places, monkeypatch, env,
                                                                   args, message):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # where a W&B run would land, if one started
    for key, value in env.items():
        monkeypatch.setenv(key, fill(value, bad_places))
    flags = [a for a in args if a.startswith("-")]
    where = f"hydra.sweep.dir={tmp_path / 'sweep'}" if flags else f"hydra.run.dir={tmp_path / 'run'}"
    code, out, err = in_process([*flags, *TINY, "logger=default", "trainer.max_steps=2",
                                 *(a for a in args if a not in flags), where])
    assert_refused(code, out, err, fill(message, bad_places), 2, tmp_path)
    assert not list(tmp_path.rglob("wandb"))


def test_a_w_and_b_key_without_a_server_logs_offline_within_seconds(in_process, tmp_path, monkeypatch):
    """`auto` with a key but no way to the server: one note, then the run goes on offline (wandb itself would wait
    about 90 s and die in a traceback)."""
    for key, value in UNREACHABLE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = tmp_path / "run"
    code, out, err = in_process([*TINY, "logger=default", "trainer.max_steps=2", f"hydra.run.dir={run}"])
    assert code == 0, err[-3000:]
    assert ("[resablate] W&B: a key is configured but the server cannot be reached (127.0.0.1:9: Connection refused): "
            "logging offline") in out
    assert list((run / "wandb").glob("offline-run-*"))
