"""The model zoo against the papers' numbers, and every shortcut x block pair built, run and pickled."""

import pickle

import pytest
import torch

from resablate.models import BLOCKS, SHORTCUTS, build_network, count_macs, count_params, resolve_architecture

# Exact counts with option A, BN affine and fc included (R1 Table 6 rounds them: 0.27M ... 19.4M).
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
# torchvision's counts for option B with 1000 classes; R1 Table 1 GMACs.
IMAGENET = {
    18: (11_689_512, 1.8),
    34: (21_797_672, 3.6),
    50: (25_557_032, 3.8),
    101: (44_549_160, 7.6),
    152: (60_192_808, 11.3),
}


@pytest.mark.parametrize("depth", CIFAR_PARAMS)
def test_cifar_option_a_params_exact_and_plain_equal(depth):
    resnet = build_network(depth=depth, shortcut="zero_pad", family="cifar", num_classes=10)
    plain = build_network(depth=depth, shortcut="none", family="cifar", num_classes=10)
    assert count_params(resnet) == CIFAR_PARAMS[depth]
    assert count_params(plain) == CIFAR_PARAMS[depth]


@pytest.mark.parametrize("depth", IMAGENET)
def test_imagenet_option_b_matches_torchvision_and_paper_macs(depth):
    torchvision = pytest.importorskip("torchvision")
    params, gmacs = IMAGENET[depth]
    net = build_network(depth=depth, shortcut="projection", family="imagenet", num_classes=1000)
    assert count_params(net) == params
    assert count_params(getattr(torchvision.models, f"resnet{depth}")()) == params
    assert count_macs(net, (1, 3, 224, 224)) / 1e9 == pytest.approx(gmacs, rel=0.02)


def test_stride_on_3x3_is_torchvision_v1_5():
    v15 = build_network(depth=50, shortcut="B", family="imagenet", num_classes=1000, stride_on="3x3")
    assert count_params(v15) == IMAGENET[50][0]
    assert count_macs(v15, (1, 3, 224, 224)) / 1e9 == pytest.approx(4.09, rel=0.01)


# R2's code (KaimingHe/resnet-1k-layers, resnet-pre-act.lua) counted layer by layer (derived): a 3x3 stem conv without
# BN; per unit BN-ReLU before each conv (convs without bias); where the dimensions grow, one BN-ReLU shared by the
# residual branch and a bare 1x1 projection shortcut; a final BN-ReLU; the 10-way fc. Its file builds the 9n+2
# bottleneck nets; ResNet-110 is the same unit with two 3x3 convs (projection where the dimensions grow).
R2_CODE_PARAMS = {110: 1_730_522, 164: 1_703_258, 1001: 10_327_706}


@pytest.mark.parametrize("depth", R2_CODE_PARAMS)
def test_pre_activation_projection_nets_have_the_parameters_of_r2s_code(depth):
    net = build_network(depth=depth, block="preact", shortcut="projection")
    assert count_params(net) == R2_CODE_PARAMS[depth]
    projections = [m for m in net.modules() if isinstance(m, SHORTCUTS["projection"])]
    # Where the dimensions grow: stages 2 and 3, and stage 1 of a bottleneck net (16 -> 64 channels).
    assert len(projections) == (2 if depth == 110 else 3) and all(len(m.proj) == 1 for m in projections)  # no BN
    # The BN-projection variant, asked for: one BN per projection more (2 x its channels).
    with_bn = build_network(depth=depth, block="preact", shortcut="projection", shortcut_options={"bn": True})
    extra = sum(2 * m.out_channels for m in projections)
    assert count_params(with_bn) == R2_CODE_PARAMS[depth] + extra


def test_post_activation_projection_keeps_its_bn():
    net = build_network(depth=34, shortcut="B", family="imagenet", num_classes=1000)
    assert count_params(net) == IMAGENET[34][0]  # torchvision's ResNet-34: conv + BN on each projection


def test_r2_bottleneck_cifar_sizes():
    assert (
        count_params(build_network(depth=164, block="preact", shortcut="projection")) / 1e6
        == pytest.approx(1.7, abs=0.05)
    )
    arch = resolve_architecture(depth=1001, block="preact")
    assert (arch.block, arch.stage_depths) == ("preact_bottleneck", (111, 111, 111))


# Shortcut kinds that need a carry across a change of shape; identity is checked apart (it must refuse).
CARRYING = [name for name in SHORTCUTS if name != "identity"]


def _pair_cases():
    for shortcut in CARRYING:
        for block in BLOCKS:
            yield shortcut, block


@pytest.mark.parametrize("shortcut,block", list(_pair_cases()))
@pytest.mark.parametrize("family", ["cifar", "imagenet"])
def test_every_pair_builds_runs_backward_and_pickles(shortcut, block, family):
    bottleneck = BLOCKS[block].expansion == 4
    depth = {
        ("cifar", False): 8, ("cifar", True): 11, ("imagenet", False): 18, ("imagenet", True): 50
    }[family, bottleneck]
    net = build_network(depth=depth, block=block, shortcut=shortcut, family=family, num_classes=7, in_channels=1,
                        width_multiplier=0.25 if family == "imagenet" else 1.0)
    x = torch.randn(2, 1, 32, 32) if family == "cifar" else torch.randn(2, 1, 64, 64)
    out = net(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    clone = pickle.loads(pickle.dumps(net))
    net.eval(), clone.eval()
    torch.testing.assert_close(clone(x), net(x))


@pytest.mark.parametrize("block", list(BLOCKS))
def test_identity_refuses_shape_change_and_suggests_options(block):
    with pytest.raises(ValueError, match=r"identity.*changes shape.*zero_pad.*projection"):
        build_network(depth=11 if BLOCKS[block].expansion == 4 else 8, block=block, shortcut="identity", family="cifar")


def test_identity_works_where_no_block_changes_shape():
    net = build_network(stage_depths=[3], widths=[16], block="basic", shortcut="identity", family="cifar")
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_projection_only_where_shape_changes_and_c_everywhere():
    b = build_network(depth=20, shortcut="projection")
    c = build_network(depth=20, shortcut="projection_all")
    assert count_params(b) - CIFAR_PARAMS[20] == (16 * 32 + 64) + (32 * 64 + 128)  # two 1x1 conv + BN
    assert sum(type(m).__name__ == "ProjectionAllShortcut" for m in c.modules()) == 9


@pytest.mark.parametrize("depth,message", [
    (35, r"depth 35 .*6n\+2 \(basic\) or 9n\+2 \(bottleneck\) for the cifar family \(valid nearby: .*32.*38"),
    (35, r"not one of 18 \(basic\), 34 \(basic\), 50 \(bottleneck\)"),
])
def test_impossible_depth_names_value_and_valid_nearby(depth, message):
    with pytest.raises(ValueError, match=message):
        build_network(depth=depth)


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=20, shortcut="foo"), r"unknown shortcut 'foo'; valid: .*zero_pad"),
    (dict(depth=20, block="tiny"), r"unknown block 'tiny'; valid: auto, preact, basic"),
    (dict(depth=20, family="mnist"), r"unknown family 'mnist'; valid: auto, cifar, imagenet"),
    (dict(depth=34, block="bottleneck"), r"depth 34 with block bottleneck"),
    (dict(depth=50), r"depth 50 fits both the cifar and the imagenet family"),
    (dict(depth=20, shortcut="zero_pad", shortcut_options={"gate_bias": -1}),
     r"no option 'gate_bias'; its options: none"),
    (dict(stage_depths=[2, 2, 2], widths=[16, 32]), r"widths=\[16, 32\] must be 3 positive numbers"),
    (dict(depth=20, width_multiplier=0), r"width_multiplier=0 must be > 0"),
    (dict(depth=56, stage_depths=[3, 3, 3]), r"depth 56 disagrees with stage_depths=\[3, 3, 3\]"),
    (dict(depth=20, shortcut="highway", shortcut_options={"carry": "teleport"}), r"unknown carry 'teleport'; valid"),
])
def test_bad_arguments_fail_with_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_network(**kwargs)


def test_family_auto_from_depth_and_image_size():
    assert resolve_architecture(depth=110).family == "cifar"
    assert resolve_architecture(depth=34).family == "imagenet"
    assert resolve_architecture(depth=50, image_size=32).family == "cifar"
    assert resolve_architecture(depth=50, image_size=224).family == "imagenet"
    small = resolve_architecture(depth=34, image_size=32)
    assert small.family == "imagenet" and small.small_input
    net = build_network(depth=34, image_size=32, shortcut="projection")
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_fashion_mnist_shape_single_channel():
    net = build_network(depth=20, in_channels=1, image_size=28)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_custom_stages_widths_and_multiplier():
    net = build_network(stage_depths=[1, 2, 3], widths=[8, 16, 32], shortcut="B")
    assert net.arch.depth == 2 * 6 + 2 and net.arch.widths == (8, 16, 32)
    wide = build_network(depth=20, width_multiplier=2.0)
    assert wide.arch.widths == (32, 64, 128) and wide.arch.stem_width == 32
    assert count_params(wide) > 3.5 * CIFAR_PARAMS[20]


@pytest.mark.parametrize("block", ["preact_basic", "preact_bottleneck"])
def test_preact_block_with_zero_init_last_is_exact_identity(block):
    net = build_network(stage_depths=[2, 2, 2], block=block, shortcut="zero_pad", zero_init_last=True).eval()
    unit = net.stages[0][1]  # shape-keeping block: identity shortcut
    x = torch.randn(4, unit.conv1.in_channels, 8, 8)
    assert torch.equal(unit(x), x)


def test_highway_gate_at_very_negative_bias_carries_x():
    net = build_network(depth=20, shortcut="highway", shortcut_options={"gate_bias": -1e4}).eval()
    unit = net.stages[1][1]
    x = torch.rand(2, 32, 8, 8)  # non-negative, as after the previous unit's ReLU
    torch.testing.assert_close(unit(x), x)
    gates = [m for m in net.modules() if type(m).__name__ == "HighwayShortcut"]
    assert len(gates) == 9 and all(g.gate.bias.detach()[0].item() == -1e4 for g in gates)


def test_gate_default_biases_follow_the_papers():
    def bias(name):
        net = build_network(depth=8, shortcut=name)
        return {m.gate.bias.detach()[0].item() for m in net.modules() if hasattr(m, "gate")}

    assert bias("highway") == {-2.0}
    assert bias("exclusive_gate") == {-6.0}
    assert bias("shortcut_gate") == {-6.0}


def test_he_init_and_bn():
    """He et al.'s init in torchvision's mode, std sqrt(2 / fan_out), on a conv whose fan-out (32 x 3 x 3) is twice its
    fan-in (16 x 3 x 3), so that the other mode (std 1.41x larger) fails."""
    net = build_network(depth=20)
    conv = net.stages[1][0].conv1
    assert (conv.in_channels, conv.out_channels) == (16, 32)
    assert conv.weight.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.1)
    assert torch.all(net.stages[0][0].bn1.weight == 1) and torch.all(net.stages[0][0].bn1.bias == 0)


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        SHORTCUTS.register("zero_pad")(object)
