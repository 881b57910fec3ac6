"""trainer.precision=auto, channels_last=auto and trainer.threads=auto: the decision table, with the hardware mocked."""

import pytest

from resablate.app import hardware
from resablate.app.hardware import Device, choose_channels_last, choose_precision, choose_threads, decide

ZEN3 = Device("cpu", "AMD EPYC 7B13", cpu_flags=frozenset({"avx2", "fma"}), vector="AVX2")
ZEN4 = Device("cpu", "AMD EPYC 9B14", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}), vector="AVX512")
SAPPHIRE = Device("cpu", "Intel Xeon", cpu_flags=frozenset({"avx512f", "amx_bf16", "amx_tile"}), vector="AVX512")
SKYLAKE = Device("cpu", "Intel Xeon Skylake", cpu_flags=frozenset({"avx512f", "avx2"}), vector="AVX512")
ARM = Device("cpu", "aarch64", cpu_flags=frozenset({"asimd", "bf16"}), vector="DEFAULT")
H100 = Device("cuda", "NVIDIA H100", cuda_capability=(9, 0))
A100 = Device("cuda", "NVIDIA A100", cuda_capability=(8, 0))
V100 = Device("cuda", "Tesla V100", cuda_capability=(7, 0))
T4 = Device("cuda", "Tesla T4", cuda_capability=(7, 5))
MPS = Device("mps", "Apple MPS")


@pytest.mark.parametrize("device,precision", [
    (ZEN3, "32-true"), (SKYLAKE, "32-true"), (ARM, "32-true"),  # no AVX512_BF16/AMX: emulated bf16
    (ZEN4, "bf16-mixed"), (SAPPHIRE, "bf16-mixed"),
    (H100, "bf16-mixed"), (A100, "bf16-mixed"), (V100, "16-mixed"), (T4, "16-mixed"),
    (MPS, "32-true"),
])
def test_auto_precision_follows_native_bf16(device, precision):
    choice = choose_precision("auto", device)
    assert (choice.value, choice.requested) == (precision, "auto")
    assert device.name in choice.reason


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed", "64-true"])
@pytest.mark.parametrize("device", [ZEN3, SAPPHIRE, H100, V100])
def test_an_explicit_precision_is_always_honoured(device, explicit):
    assert choose_precision(explicit, device).value == explicit


@pytest.mark.parametrize("device,precision,nhwc", [
    (H100, "bf16-mixed", True), (V100, "16-mixed", True), (V100, "32-true", True),
    (SAPPHIRE, "bf16-mixed", True), (SAPPHIRE, "32-true", True), (ZEN4, "bf16-mixed", True),
    (ZEN3, "32-true", False), (ZEN3, "bf16-mixed", False), (ARM, "32-true", False), (MPS, "32-true", False),
])
def test_auto_channels_last(device, precision, nhwc):
    assert choose_channels_last("auto", device, precision).value is nhwc
    assert choose_channels_last(not nhwc, device, precision).value is (not nhwc)  # explicit wins


@pytest.mark.parametrize("cores,jobs,ranks,threads", [(2, 1, 1, 2), (2, 2, 1, 1), (16, 4, 1, 4), (16, 2, 2, 4),
                                                      (2, 4, 1, 1), (3, 2, 1, 1)])
def test_threads_are_the_cores_shared_out(cores, jobs, ranks, threads):
    assert choose_threads("auto", cores, jobs, ranks).value == threads
    assert choose_threads(7, cores, jobs, ranks).value == 7


def test_detection_reads_the_cpu_flags(monkeypatch):
    """With /proc/cpuinfo's flags mocked: AMX or AVX512_BF16 is native bf16, AVX2 alone is not."""
    monkeypatch.setattr(hardware, "accelerator_kind", lambda accelerator: "cpu")
    monkeypatch.setattr(hardware.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("Mock CPU", frozenset({"avx2", "avx512_bf16"})))
    native = decide("auto", "auto", "auto", "auto", devices=1)
    assert (native.precision.value, native.channels_last.value) == ("bf16-mixed", True)
    monkeypatch.setattr(hardware.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("Mock CPU", frozenset({"avx2"})))
    emulated = decide("auto", "auto", "auto", "auto", devices=1)
    assert (emulated.precision.value, emulated.channels_last.value) == ("32-true", False)
    assert "no native bf16 on Mock CPU" in emulated.precision.reason
    summary = emulated.summary()
    assert summary["precision"] == "32-true" and summary["precision_requested"] == "auto"
    assert summary["native_bf16"] is False and summary["threads"] >= 1


def test_slurm_tasks_keep_their_own_cores(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert decide("32-true", False, "auto", "cpu", devices=4, device=ZEN3).threads.value == 8


def test_this_machine_is_detected():
    device = hardware.detect("cpu")
    assert device.kind == "cpu" and device.name and device.vector


@pytest.fixture
def fp32_settings():
    """torch's process-wide TF32 settings, put back after the test."""
    import torch

    conv, matmul = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    yield
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul


def test_32_true_on_cuda_turns_tf32_off_and_says_so(fp32_settings):
    """On Ampere and Hopper, torch's default runs cuDNN convolutions in TF32; 32-true must be IEEE fp32 there."""
    import torch

    torch.backends.cudnn.conv.fp32_precision = "tf32"  # torch's default for convolutions
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    mixed = decide("auto", "auto", "auto", "cuda", devices=1, device=H100)
    hardware.apply_arithmetic(mixed)  # bf16-mixed: torch's defaults stay
    assert (mixed.arithmetic, torch.backends.cudnn.conv.fp32_precision) == ("bf16-mixed", "tf32")
    exact = decide("32-true", "auto", "auto", "cuda", devices=1, device=H100)
    hardware.apply_arithmetic(exact)
    assert torch.backends.cudnn.conv.fp32_precision == torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert exact.summary()["arithmetic"] == "fp32 (TF32 off)"


def test_32_true_on_a_cpu_is_fp32_and_changes_no_cuda_setting(fp32_settings):
    import torch

    torch.backends.cudnn.conv.fp32_precision = "tf32"
    decisions = decide("32-true", False, 1, "cpu", devices=1, device=ZEN3)
    hardware.apply_arithmetic(decisions)
    assert (decisions.summary()["arithmetic"], torch.backends.cudnn.conv.fp32_precision) == ("fp32", "tf32")
    assert decide("bf16-mixed", False, 1, "cpu", devices=1, device=ZEN4).arithmetic == "bf16-mixed"


@pytest.mark.parametrize("device,archs,supported", [
    (V100, ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], False),  # torch 2.14's CUDA 13 wheels
    (Device("cuda", "Tesla P100", cuda_capability=(6, 0)), ["sm_75", "sm_80"], False),
    (T4, ["sm_75", "sm_80"], True), (H100, ["sm_75", "sm_80", "sm_90"], True),
    (Device("cuda", "NVIDIA A10", cuda_capability=(8, 6)), ["sm_75", "sm_80"], True),  # sm_80 kernels run on 8.6
    (Device("cuda", "NVIDIA H100", cuda_capability=(9, 0)), ["sm_75", "sm_80", "compute_80"], True),  # PTX
    (Device("cuda", "NVIDIA B200", cuda_capability=(10, 0)), ["sm_90", "sm_100"], True),
    (V100, ["sm_50", "sm_60", "sm_70"], True), (ZEN3, [], True),
])
def test_a_gpu_this_torch_build_has_no_kernels_for_is_named(monkeypatch, device, archs, supported):
    monkeypatch.setattr(hardware.torch.cuda, "get_arch_list", lambda: archs)
    message = hardware.missing_cuda_kernels(device)
    assert (message is None) == supported
    if not supported:
        major, minor = device.cuda_capability
        assert device.name in message and f"compute capability {major}.{minor}" in message and archs[0] in message
