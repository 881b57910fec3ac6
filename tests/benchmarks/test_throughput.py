"""benchmarks/throughput.py runs end to end on a tiny budget and writes the documented JSON rows; bad flags name the
valid choices. No speed is asserted here (timings of a shared machine are no test): see the benchmark's own output."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"
KEYS = {"model", "precision", "device", "batch", "resablate_ips", "bare_ips", "ratio", "mfu", "time_64k_s"}


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("benchmarks_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_writes_one_row_per_model_and_precision(throughput, tmp_path, capsys):
    out = tmp_path / "rows.json"
    throughput.main(["--device", "cpu", "--models", "resnet20", "--precision", "32-true,bf16-mixed", "--steps", "2",
                     "--warmup", "1", "--batch", "16", "--channels-last", "both", "--json", str(out)])
    rows = json.loads(out.read_text())
    assert [(r["model"], r["precision"], r["channels_last"]) for r in rows] == [
        ("resnet20", "32-true", False), ("resnet20", "32-true", True),
        ("resnet20", "bf16-mixed", False), ("resnet20", "bf16-mixed", True)]
    for r in rows:
        assert KEYS <= set(r)
        assert (r["device"], r["batch"], r["macs_per_image"]) == ("cpu", 16, 40_551_040)  # R1: 41M FLOPs
        assert r["resablate_ips"] > 0 and r["bare_ips"] > 0
        assert r["device_detail"] and r["cpu_capability"] and isinstance(r["native_bf16"], bool)  # names its machine
        # the ratio of the unrounded rates, which are printed to 0.1 img/s
        ours, bare = r["resablate_ips"], r["bare_ips"]
        low, high = (ours - 0.05) / (bare + 0.05), (ours + 0.05) / (bare - 0.05)
        assert low - 1e-4 <= r["ratio"] <= high + 1e-4, (r["ratio"], ours, bare)
        assert r["mfu"] == pytest.approx(r["achieved_macs_per_s"] / r["peak_macs_per_s"], rel=1e-3)
        assert r["time_64k_s"] == pytest.approx(64000 * 128 / r["resablate_ips"], rel=0.01)
    table = capsys.readouterr().out
    assert "resnet20   32-true     NCHW" in table and "resnet20   bf16-mixed  NHWC" in table


def test_auto_layout_is_what_training_picks(throughput):
    from resablate.app.hardware import choose_channels_last, detect

    args = throughput.parse_args(["--device", "cpu"])
    for precision in ("32-true", "bf16-mixed"):
        assert throughput.layouts(args, throughput.torch.device("cpu"), precision) == [
            choose_channels_last("auto", detect("cpu"), precision).value]


@pytest.mark.parametrize("flags,message", [
    (["--models", "resnet21"], "--models 'resnet21' is not valid; valid: resnet20, resnet56, resnet110, resnet50"),
    (["--precision", "fp8"], "--precision 'fp8' is not valid; valid: 32-true, bf16-mixed"),
    (["--steps", "0"], "--steps 0 must be > 0"),
    (["--chunk", "0"], "--chunk 0 must be > 0"),
])
def test_bad_flags_name_the_value_and_the_choices(throughput, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        throughput.parse_args(["--device", "cpu", *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
