"""Wrong input, answered before any training: a non-zero exit status, one error line naming the value (and what is
valid), no traceback, and no run folder left behind (or none holding checkpoints or a summary).

Errors of ours print `resablate: error: <one line>` (status 2). Errors Hydra finds while parsing or merging an override
(a value of the wrong type, a bad sweep grammar) and the Optuna sweeper's own checks keep Hydra's form, whose first line
names the override (status 1). Most cases run the app in this process; a few run it as a user would, as subprocesses
side by side, to check the console and the exit status exactly.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

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


def write_fashion(root, truncate: str | None = None):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 12)):
        for kind, magic, shape in (("images", 2051, (n, 28, 28)), ("labels", 2049, (n,))):
            array = rng.integers(0, 10 if kind == "labels" else 256, shape, dtype=np.uint8)
            path = root / f"{split}-{kind}-idx{len(shape)}-ubyte.gz"
            with gzip.open(path, "wb") as f:
                f.write(struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape) + array.tobytes())
            if path.name == truncate:
                path.write_bytes(path.read_bytes()[:-40])  # a download cut short
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
    (["objective=val_acc"], "resablate: error: objective 'val_acc' is not valid; valid: auto, val_error", 2),
    (["seed=-1"], "resablate: error: data: seed=-1 must be an integer >= 0", 2),
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
    (["hydra.run.dir={file}/run"], "resablate: error: hydra.run.dir={file}/run cannot be a folder: {file} is a file",
     2),
    (["-m", "hydra.sweep.dir={file}/sweep", "seed=1,2"],
     "resablate: error: hydra.sweep.dir={file}/sweep cannot be a folder: {file} is a file", 2),
    (["-m", "shortcut=zero_pad,projection,projektion"], "resablate: error: shortcut=projektion is not an option", 2),
    # Hydra's own checks: the first line names the override.
    (["trainer.devices=two"], "Error merging override trainer.devices=two", 1),
    (["recipe.schedule=exponential"], "Error merging override recipe.schedule=exponential", 1),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.params.depth=choise(8,14)"],
     "Error parsing override 'hydra.sweeper.params.depth=choise(8,14)'", 1),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.storage=nosuchdb://host/db"],
     "Optuna sweeper: cannot open storage 'nosuchdb://host/db'", 1),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.storage=sqlite:///{file}/optuna.db"],
     "Optuna sweeper: cannot open storage 'sqlite:///{file}/optuna.db': File exists: {file}", 1),
]


@pytest.fixture
def bad_places(tmp_path):
    write_cifar(tmp_path / "cifar_partial", missing="data_batch_3")
    write_cifar(tmp_path / "cifar_damaged", damaged="data_batch_2")
    write_fashion(tmp_path / "fashion_cut", truncate="train-images-idx3-ubyte.gz")
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
    left = [p for p in tmp_path.rglob("*") if p.name in ("summary.json", "checkpoints", "metrics.csv", ".hydra")]
    assert not left, left


@pytest.mark.parametrize("args,message,status", CASES, ids=[" ".join(a for a in c[0] if a not in DATA) for c in CASES])
def test_bad_input_is_refused_in_one_line_before_training(in_process, tmp_path, bad_places, args, message, status):
    base = [] if any(a.startswith("data=") for a in args) else list(TINY)
    where = [] if any(a.startswith("hydra.") for a in args) else [
        f"hydra.sweep.dir={tmp_path / 'sweep'}" if "-m" in args else f"hydra.run.dir={tmp_path / 'run'}"]
    flags = [a for a in args if a.startswith("-")]
    argv = [*flags, *base, "trainer.max_steps=2", *(fill(a, bad_places) for a in args if a not in flags), *where]
    code, out, err = in_process(argv)
    assert_refused(code, out, err, fill(message, bad_places), status, tmp_path)


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
