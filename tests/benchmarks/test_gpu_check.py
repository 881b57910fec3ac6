"""benchmarks/gpu_check.sh runs end to end on a CPU (its dry run: tiny sizes, every stage that has a CPU form) and
writes its verdicts, so that the script a lent GPU will run in one call cannot rot before one comes. No speed is
asserted: the verdicts on a CPU are about the script working, and about what needs no GPU (no host read-back every
step, bitwise-equal deterministic runs)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@needs_fashion_mnist
def test_the_gpu_check_dry_run_passes_on_a_cpu_and_writes_its_verdicts(tmp_path):
    env = {**os.environ, "GPU_CHECK_DRY": "1", "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    report = json.loads((out / "checks.json").read_text())
    results = {(r["stage"], r["check"]): r["result"] for r in report["rows"]}
    assert report["dry"] is True
    assert "FAIL" not in results.values(), report["rows"]
    passed = {stage for (stage, _), result in results.items() if result == "PASS"}
    assert passed >= {"smoke", "profile", "deterministic", "fashion"}, results
    # a speed ratio, Lightning's against a bare loop: on a CPU shared with the test run it may fall below the GPU's bar
    assert {result for (stage, _), result in results.items() if stage == "throughput"} <= {"PASS", "WARN"}, results
    assert results[("profile", "host read-backs per step")] == "PASS"
    assert results[("deterministic", "metrics.csv equal")] == "PASS"
    assert results[("resnet50", "-")] == results[("compile", "-")] == "SKIP"  # GPU only
    assert results[("side_by_side", "2 jobs against 1")] in ("PASS", "WARN")  # the dry run's 2 (the GPU's 4)
    assert json.loads((out / "smoke" / "summary.json").read_text())["status"] == "completed"
    assert json.loads((out / "throughput.json").read_text())[0]["model"] == "resnet20"
    assert (out / "checks.md").read_text().startswith("| stage | check | result |")
