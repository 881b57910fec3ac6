"""Every file in sweeps/ composes, every job it declares composes and its network builds, in the full form and in the
shortened CPU form its header documents; fig1 runs end to end through `python -m resablate +sweep=fig1`.

What a user would notice: the number of runs behind each table (R1 Table 6: 8 nets x 5 seeds), each run in a folder
named after its own overrides below `multirun/<artifact>/`, the paper's recipe and data set, and that the commands in
the file headers (copied into the README) work as written.
"""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from resablate.app.cli import sweeper_params
from resablate.builder import to_container
from resablate.models import count_params
from tests.conftest import compose_app as compose
from tests.conftest import needs_fashion_mnist, run_app

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = ROOT / "sweeps"
# artifact -> (runs, seeds per net, recipe, data set)
GRIDS = {
    "fig1": (6, 3, "cifar_paper", "CIFAR10Data"),
    "fig6": (33, 3, "cifar_paper", "CIFAR10Data"),
    "fig7": (15, 3, "cifar_paper", "CIFAR10Data"),
    "table6": (40, 5, "cifar_paper", "CIFAR10Data"),
    "gates": (35, 5, "cifar_paper", "CIFAR10Data"),
    "preact": (30, 5, "cifar_paper", "CIFAR10Data"),
    "table2": (12, 3, "imagenet_paper", "ImageNetData"),
    "table3": (21, 3, "imagenet_paper", "ImageNetData"),
    "degradation": (12, 3, "quick", "FashionMNISTData"),
    "constructed": (3, 3, "quick", "FashionMNISTData"),
    "demo": (3, 1, "quick", "FashionMNISTData"),
}
SEARCHES = {
    "arch_search": (["minimize", "minimize"], ["depth", "block", "shortcut", "model.width_multiplier"], "none"),
    "hparams": ("minimize", ["recipe.lr", "recipe.weight_decay"], "hyperband"),
}
_NETS: dict[str, int] = {}  # architecture -> parameter count, so each distinct net is built once per session


def header_commands(name: str) -> tuple[list[str], list[str]]:
    """The overrides of the full and of the shortened command written in the file's header (and the README)."""
    lines = (SWEEPS / f"{name}.yaml").read_text().splitlines()
    commands = [ln.split("python -m resablate", 1)[1] for ln in lines if f"python -m resablate +sweep={name}" in ln]
    # the full command names its folder (`-> multirun/...`); the shortened one comes last
    full, short = (shlex.split(c.split("->")[0]) for c in ([c for c in commands if "->" in c][0], commands[-1]))
    assert full[0] == short[0] == f"+sweep={name}"
    return full, short


def grids_sweeper():
    # Looked up after Hydra's plugin scan has run (compose does it): the scan re-executes the plugin module.
    import hydra_plugins.resablate_sweeps.grids_sweeper as module

    return module.GridsSweeper


def build(cfg) -> int:
    """Build the job's network (the real data module's shape and classes, no data read) and count its parameters."""
    from resablate.builder import build_datamodule, build_net

    key = json.dumps([to_container(cfg[k]) for k in ("depth", "family", "block", "shortcut", "model")], default=str)
    key += cfg.data._target_
    if key not in _NETS:
        _NETS[key] = count_params(build_net(cfg, build_datamodule(cfg)))
    return _NETS[key]


def compose_jobs(name: str, args: list[str]):
    """The sweep's master config and, for each declared job, (its overrides, its composed config)."""
    master = compose([o for o in args if "," not in o], return_hydra_config=True)  # sweeps on the command line: jobs
    sweeper = master.hydra.sweeper
    jobs = grids_sweeper()(
        params=OmegaConf.to_container(sweeper.params), grids=OmegaConf.to_container(sweeper.grids)
    ).jobs(args)
    return master, jobs


def test_there_is_one_sweep_file_per_paper_artifact_and_search():
    assert sorted(p.stem for p in SWEEPS.glob("*.yaml")) == sorted([*GRIDS, *SEARCHES])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_every_declared_run_composes_and_builds(name):
    runs, seeds, recipe, data = GRIDS[name]
    full, short = header_commands(name)
    master, jobs = compose_jobs(name, full)
    assert master.hydra.mode.name == "MULTIRUN"  # `+sweep=NAME` sweeps with or without -m (cli.runs_a_sweep)
    assert len(jobs) == runs
    folders = [job[-1].split("=", 1)[1].strip("'") for job in jobs]
    assert len(set(folders)) == runs and all("seed=" in f for f in folders)

    by_net = defaultdict(list)  # the same net over its seeds: compose and build it once
    for job in jobs:
        task = [o for o in job if not o.startswith("hydra.")]
        by_net[tuple(o for o in task if not o.startswith("seed="))].append(task)
    for with_seeds in by_net.values():
        assert len(with_seeds) == seeds  # mean ± std over this many seeds
        cfg = compose(with_seeds[0])
        assert (cfg.recipe.name, cfg.data._target_.rsplit(".", 1)[1]) == (recipe, data)
        assert build(cfg) > 0

    # The shortened CPU form of the header: Fashion-MNIST, a few steps, the same recipe, nets that build.
    _, short_jobs = compose_jobs(name, short)
    assert 1 <= len(short_jobs) <= 7  # R2 Table 1's seven shortcut variants at most
    for job in short_jobs:
        cfg = compose([o for o in job if not o.startswith("hydra.")])
        assert (cfg.data._target_, cfg.trainer.max_steps, cfg.recipe.name, cfg.seed) == (
            "resablate.data.FashionMNISTData", 20, recipe, 0)
        assert build(cfg) > 0


def test_table6_declares_resnets_and_highway_nets():
    _, jobs = compose_jobs("table6", ["+sweep=table6", "seed=0"])
    assert [job[-1] for job in jobs] == [
        *(f"hydra.sweep.subdir='depth={d},seed=0,shortcut=zero_pad'" for d in (20, 32, 44, 56, 110, 1202)),
        "hydra.sweep.subdir='depth=20,seed=0,shortcut.gate_bias=-2,shortcut=highway'",
        "hydra.sweep.subdir='depth=32,seed=0,shortcut.gate_bias=-3,shortcut=highway'",
    ]
    cfg = compose([o for o in jobs[0] if not o.startswith("hydra.")])
    assert build(cfg) == 269_722  # ResNet-20, option A: R1 Table 6's 0.27M


def test_the_r2_table3_sweep_builds_the_nets_of_r2s_code():
    from tests.models.test_network import R2_CODE_PARAMS

    _, jobs = compose_jobs("preact", ["+sweep=preact", "seed=0"])
    built = {}
    for job in jobs:
        cfg = compose([o for o in job if not o.startswith("hydra.")])
        built[(cfg.depth, cfg.block.name)] = build(cfg)
    assert {depth: built[(depth, "preact")] for depth in (110, 164, 1001)} == R2_CODE_PARAMS
    assert built[(110, "auto")] == 1_730_714  # R1's post-activation ResNet-110 with BN-projections (option B)


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_searches_compose_for_every_choice(name):
    from optuna.distributions import CategoricalDistribution

    from hydra_plugins.resablate_optuna_sweeper import parse_search_space

    direction, params, pruner = SEARCHES[name]
    full, short = header_commands(name)
    master = compose(full, return_hydra_config=True)
    assert master.hydra.mode.name == "MULTIRUN"  # `+sweep=NAME` sweeps with or without -m (cli.runs_a_sweep)
    sweeper = master.hydra.sweeper
    assert OmegaConf.to_container(sweeper)["direction"] == direction
    assert (list(sweeper.params), sweeper.pruner) == (params, pruner)
    assert master.data.val_size == 5000 and master.recipe.name == "cifar_paper"  # selection on R1's 45k/5k split
    space = parse_search_space([f"{k}={v}" for k, v in sweeper.params.items()])
    categorical = {n for n, p in space.params.items() if isinstance(p.distribution, CategoricalDistribution)}
    first = {n: p.distribution.choices[0] if n in categorical else p.distribution.high for n, p in space.params.items()}
    values = [first]  # every choice of every parameter, the others at their first choice (or the highest value)
    for n, p in space.params.items():
        if n in categorical:
            values += [{**first, n: c} for c in p.distribution.choices[1:]]
    for value in values:
        cfg = compose([*full, *space.overrides(value)])
        assert build(cfg) > 0
    short_cfg = compose(sweeper_params(short), return_hydra_config=True)  # as the command line gives them to Hydra
    assert short_cfg.data._target_ == "resablate.data.FashionMNISTData" and short_cfg.hydra.sweeper.n_trials <= 4


def test_arch_search_returns_error_and_macs():
    from resablate.app.pruning import objective_value

    cfg = compose(["+sweep=arch_search"])
    summary = {"status": "completed", "val_error": 7.5, "test_error": 8.0, "macs": 40_000_000}
    assert objective_value(cfg, summary) == [7.5, 40_000_000.0]
    assert objective_value(cfg, {**summary, "status": "diverged"})[0] != objective_value(cfg, summary)[0]


def test_sweep_folders_are_named_after_the_artifact():
    from resablate.app.naming import sweep_group as _sweep_group

    assert _sweep_group(Path("multirun/table6"), "table6") == "table6"
    shortened = Path("multirun/table6/data=fashion_mnist,seed=0")
    assert _sweep_group(shortened, "table6") == "table6/data=fashion_mnist,seed=0"
    assert _sweep_group(Path("multirun/depth=20,56"), None) == "depth=20,56"


def test_a_sweep_on_a_sweeper_param_is_kept_as_its_text():
    from resablate.app.cli import sweeper_params

    assert sweeper_params(
        ["hydra.sweeper.params.depth=choice(8,14,20)", "hydra.sweeper.params.x=1,2", "depth=20,56", "seed=1"]
    ) == ["++hydra.sweeper.params.depth='choice(8,14,20)'", "++hydra.sweeper.params.x='1,2'", "depth=20,56", "seed=1"]


@pytest.mark.parametrize("eval_every,total,expected", [(2000, 64000, 2000), (2000, 30, 10), (3, 6, 3), (60, 60, 60),
                                                       (500, 2, 1)])
def test_a_run_shorter_than_eval_every_is_evaluated_at_thirds(eval_every, total, expected):
    from resablate.app.trainer import eval_interval

    assert eval_interval(eval_every, total) == expected


@pytest.mark.slow
@needs_fashion_mnist
def test_fig1_shortened_runs_end_to_end_and_a_rerun_adds_nothing(tmp_path):
    # The header's shortened form, with smaller nets and one evaluation so that it fits a test budget.
    args = ["+sweep=fig1", "data=fashion_mnist", "data.train_size=512", "trainer.max_steps=20", "seed=0",
            "depth=8,14", "recipe.eval_every=20", "logger=csv"]
    out = run_app(args, cwd=tmp_path)
    sweep = tmp_path / "multirun" / "fig1"
    (subdir,) = [p for p in sweep.iterdir() if p.is_dir()]  # multirun/fig1/<the extra overrides>/
    assert subdir.name == "data.train_size=512,data=fashion_mnist,depth=8,14,logger=csv,recipe.eval_every=20," \
                          "seed=0,trainer.max_steps=20"
    assert sorted(p.name for p in subdir.iterdir() if p.is_dir()) == ["depth=14,seed=0,shortcut=none",
                                                                      "depth=8,seed=0,shortcut=none"]
    for depth in (8, 14):
        summary = json.loads((subdir / f"depth={depth},seed=0,shortcut=none" / "summary.json").read_text())
        assert (summary["status"], summary["depth"], summary["shortcut"], summary["dataset"], summary["steps"],
                summary["recipe"]) == ("completed", depth, "none", "fashion_mnist", 20, "cifar_paper")
        assert 0 <= summary["test_error"] <= 100
    assert "grids sweeper: 2 jobs in" in out.stdout + out.stderr
    # +sweep=<file> without -m is a sweep too (the file says MULTIRUN): its jobs are counted in its closing line
    closing = out.stdout.strip().splitlines()[-1]
    assert closing.startswith("[resablate] sweep ") and closing.endswith(f"{subdir.name}: 2 jobs: 2 completed; exit 0")

    again = run_app(args, cwd=tmp_path).stdout
    assert again.count("already completed, nothing to do") == 2
    assert again.strip().splitlines()[-1].endswith(": 2 jobs: 2 already completed; exit 0")


@pytest.mark.parametrize("args,sweep", [
    (["+sweep=fig1", "seed=0"], True), (["sweep=fig1"], True), (["-m", "depth=20,56"], True),
    (["depth=20", "--multirun"], True), (["hydra.mode=MULTIRUN", "depth=20,56"], True), (["depth=20"], False),
    (["+sweep=fig1", "hydra.mode=RUN"], False), (["shortcut=projection", "seed=3"], False),
])
def test_a_command_is_a_sweep_with_m_with_multirun_mode_or_with_a_sweep_file(args, sweep):
    from resablate.app.cli import runs_a_sweep

    assert runs_a_sweep(args) is sweep


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=side_by_side", "hydra.launcher.n_jobs=2"]],
                         ids=["in-process", "side_by_side"])
def test_the_real_app_prunes_a_clearly_bad_trial(tmp_path, launcher):
    """The study already holds a perfect trial (0 % validation error at steps 10, 20, 30). The next trial, a real
    Fashion-MNIST job, is far worse at its first evaluation (step 10 of 30: a run shorter than eval_every is evaluated
    at thirds), so the median pruner stops it there: PRUNED in the study, `status: pruned` in its summary.json, no
    test pass, no traceback. (At CPU-test scale two real trainings differ by noise at step 10, hence the seeded one.)
    Under Hydra's in-process launcher and under side_by_side, where the job runs in a worker process of its own and
    judges pruning there (the job side of the trial contract)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="prune", storage=storage)
    study.add_trial(optuna.trial.create_trial(
        params={"depth": 8}, distributions={"depth": CategoricalDistribution([8])}, value=0.0,
        intermediate_values={10: 0.0, 20: 0.0, 30: 0.0}))
    out = run_app(["-m", "hydra/sweeper=optuna", "hydra.sweeper.study_name=prune", f"hydra.sweeper.storage={storage}",
                   "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=median",
                   "hydra.sweeper.pruner_args.n_startup_trials=1", "hydra.sweeper.params.depth=choice(8)",
                   "data=fashion_mnist", "data.train_size=256", "data.val_size=256", "trainer.max_steps=30",
                   "logger=csv", f"hydra.sweep.dir={tmp_path / 'sweep'}", *launcher], cwd=tmp_path)
    trials = optuna.load_study(study_name="prune", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    assert list(trials[1].intermediate_values) == [10] and trials[1].intermediate_values[10] > 50
    summary = json.loads((tmp_path / "sweep" / "1" / "summary.json").read_text())
    assert (summary["status"], summary["pruned_at"], summary["steps"]) == ("pruned", 10, 10)
    assert summary["test_error"] is None and summary["val_error"] > 50
    assert "Trial 1 pruned" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    if launcher:
        assert "Joblib" in out.stdout + out.stderr  # the side_by_side launcher ran the job, not the in-process one


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_the_searches_shortened_headers_run_end_to_end(tmp_path, name):
    """The shortened command of each search's header, as written there: every trial ends
    completed or pruned, the study's results are written, and arch_search's Pareto front lists trials that ran."""
    import yaml

    _, short = header_commands(name)
    out = run_app([*short, "logger=csv"], cwd=tmp_path)
    (sweep,) = [p for p in (tmp_path / "multirun" / name).iterdir() if p.is_dir()]
    trials = sorted((p for p in sweep.iterdir() if (p / "summary.json").exists()), key=lambda p: int(p.name))
    n_trials = int(next(a for a in short if a.startswith("hydra.sweeper.n_trials=")).split("=")[1])
    assert [p.name for p in trials] == [str(k) for k in range(n_trials)]
    summaries = [json.loads((p / "summary.json").read_text()) for p in trials]
    assert {s["status"] for s in summaries} <= {"completed", "pruned"}, [s["status"] for s in summaries]
    assert all(s["dataset"] == "fashion_mnist" and s["val_error"] is not None for s in summaries)
    results = yaml.safe_load((sweep / "optuna_results.yaml").read_text())
    if name == "arch_search":
        front = pd.read_csv(sweep / "pareto_front.csv")
        assert len(front) >= 1 and set(front.columns) >= {"number", "values_0", "values_1"}, front.columns
        ran = {int(p.name): s for p, s in zip(trials, summaries, strict=True)}
        for _, row in front.iterrows():  # each member of the front is a trial that ran, with its error and MACs
            s = ran[int(row["number"])]
            assert (row["values_0"], row["values_1"]) == (pytest.approx(s["val_error"]), pytest.approx(s["macs"]))
    else:
        assert set(results["best_params"]) == {"recipe.lr", "recipe.weight_decay"}
        best = min((s for s in summaries if s["status"] == "completed"), key=lambda s: s["val_error"])
        assert results["best_value"] == pytest.approx(best["val_error"])
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted([*GRIDS, *SEARCHES]))
def test_the_readme_shows_each_sweep_as_its_header_command(name):
    full, _ = header_commands(name)
    assert f"`python -m resablate {shlex.join(full)}`" in (ROOT / "README.md").read_text()
