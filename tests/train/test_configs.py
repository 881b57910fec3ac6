"""Every file in conf/ composes, and what it composes builds: the network, the data module, the checks."""

from pathlib import Path

import pytest

from resablate.app.checks import check_recipe, check_trainer
from resablate.builder import ConfigError, build_datamodule, build_net

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")  # hydra/: launcher presets
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]


def test_groups_are_the_documented_ones():
    assert GROUPS == ["block", "data", "logger", "recipe", "shortcut", "trainer"]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(compose, group, option, tmp_path):
    overrides = [f"{group}={option}", "data=synthetic"] if group != "data" else [f"data={option}"]
    if option == "imagenet":
        overrides.append(f"data.root={tmp_path}")
    if group == "block" and "bottleneck" in option:
        overrides.append("depth=29")  # 9n+2
    if option == "identity":  # identity everywhere needs a net whose blocks never change shape: one 16-wide stage
        overrides += ["model.stage_depths=[3]", "model.widths=[16]"]
    cfg = compose(overrides)
    check_trainer(cfg.trainer)
    check_recipe(cfg.recipe, cfg.trainer.max_steps)
    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    assert net.arch.depth in (8, 20, 29) or group == "data"
    if group == "shortcut":
        assert net.shortcut_name in option or option in ("A", "B", "C")


@pytest.mark.parametrize("alias,name", [("A", "zero_pad"), ("B", "projection"), ("C", "projection_all")])
def test_paper_option_aliases(compose, alias, name):
    cfg = compose([f"shortcut={alias}", "data=synthetic"])
    assert build_net(cfg, build_datamodule(cfg)).shortcut_name == name


@pytest.mark.parametrize("overrides,message", [
    (["depth=35"], r"depth 35 .*valid nearby: .*32.*38"),
    (["shortcut=highway", "+shortcut.p=0.1"], r"shortcut=highway has no key 'p'; valid keys: gate_bias, carry"),
    (["+data.colour=1"], r"data=synthetic has no key 'colour'; valid keys: .*batch_size"),
])
def test_bad_values_raise_config_error(compose, overrides, message):
    cfg = compose(["data=synthetic", *overrides])
    with pytest.raises(ConfigError, match=message):
        build_net(cfg, build_datamodule(cfg))


@pytest.mark.parametrize("override,message", [
    ("recipe.lr=-1", r"recipe.lr=-1.0 must be > 0"),
    ("recipe.batch_size=0", r"recipe.batch_size=0 must be > 0"),
    ("trainer.max_steps=0", r"trainer.max_steps=0 must be > 0"),
    ("recipe.milestones=[48000,32000]", r"recipe.milestones=\[48000, 32000\] must increase"),
    ("recipe.momentum=1.5", r"recipe.momentum=1.5 must be in \[0, 1\)"),
])
def test_bad_recipe_values(compose, override, message):
    cfg = compose([override])
    with pytest.raises(ConfigError, match=message):
        check_recipe(cfg.recipe, cfg.trainer.max_steps)


def test_bad_trainer_values(compose):
    with pytest.raises(ConfigError, match=r"trainer.precision='fp8' is not valid; valid: auto, 32-true"):
        check_trainer(compose(["trainer.precision=fp8"]).trainer)
    with pytest.raises(ConfigError, match=r"trainer.devices=0 must be > 0"):
        check_trainer(compose(["trainer.devices=0"]).trainer)


def test_typos_and_types_fail_at_composition(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="depth=abc"):
        compose(["depth=abc"])
    with pytest.raises(ConfigCompositionException) as err:
        compose(["recipe.schedule=exponential"])
    assert "expected one of [step, cosine, linear]" in str(err.value.__cause__)
    with pytest.raises(ConfigCompositionException) as err:
        compose(["recipe.lrr=0.1"])
    assert "Key 'lrr' not in 'RecipeConfig'" in str(err.value.__cause__)


def test_identity_shortcut_on_a_shape_changing_net_says_what_to_use(compose):
    cfg = compose(["shortcut=identity", "data=synthetic", "depth=20"])
    message = "'identity' cannot be used where a block changes shape.*'zero_pad'.*'projection'"
    with pytest.raises(ConfigError, match=message):
        build_net(cfg, build_datamodule(cfg))


@pytest.mark.parametrize("args,message", [
    (["depht=20"], "unknown key 'depht'; did you mean 'depth'? Valid keys at the top level: depth, family"),
    (["trainer.precison=bf16-mixed"], "did you mean 'trainer.precision'? Valid keys under trainer: accelerator"),
    (["logger.wandb.mod=offline"], "did you mean 'logger.wandb.mode'?"),
    (["shortcut=highway", "shortcut.gate_bais=-1"], "'shortcut.gate_bais' for shortcut=highway; did you mean "
                                                     "'shortcut.gate_bias'? valid keys: name, gate_bias, carry"),
    (["shortcut.gate_bias=-1"], "'shortcut.gate_bias' for shortcut=zero_pad; valid keys: name"),  # the default
    (["data=fashion_mnist", "data.train_sise=10"], "did you mean 'data.train_size'?"),
])
def test_unknown_keys_are_named_with_the_closest_valid_one(args, message):
    from resablate.app import checks

    with pytest.raises(ConfigError) as err:
        checks.compose(args, multirun=True)
    assert message in str(err.value)


@pytest.mark.parametrize("group,option", [(g, o) for g, o in OPTIONS if g in ("shortcut", "data")])
def test_every_key_of_every_option_is_accepted(compose, group, option):
    from omegaconf import OmegaConf

    from resablate.app import checks

    keys = list(compose([f"{group}={option}"])[group].keys())  # the file's and those of the options it extends
    assert keys or OmegaConf.load(CONF / group / f"{option}.yaml").get("defaults")
    args = [f"{group}={option}", *(f"{group}.{k}=1" for k in keys), "hydra/sweeper=optuna", "+x.y=1",
            "++hydra.sweeper.params.depth='choice(8,14)'", "model.widths=[16,32,64]", "depth=8,14"]
    assert checks.compose(args, multirun=True) is not None


def test_the_readme_lists_every_option_of_every_group():
    text = (CONF.parent / "README.md").read_text()
    groups = " ".join(text.split("Groups: ", 1)[1].split("\n\n", 1)[0].split())  # the paragraph, on one line
    for group in [*GROUPS, "hydra/launcher"]:
        listed = groups.split(f"`{group}=`", 1)[1].split("`", 1)[0]
        names = {w.strip(" ,;()") for w in listed.replace("=", " ").split()}
        options = {f.stem for f in (CONF / group).glob("*.yaml")}
        assert options <= names, f"README misses {group}= {sorted(options - names)}"
