import subprocess
import sys

import pytest


@pytest.mark.slow
def test_python_m_resablate_models_prints_table1_and_table6_params():
    out = subprocess.run([sys.executable, "-m", "resablate.models"], capture_output=True, text=True, check=True).stdout
    assert "R1 Table 1" in out and "R1 Table 6" in out
    # ResNet-50 row: blocks, exact params, our and the paper's GMACs.
    assert any(all(s in line for s in ("3x4x6x3", "25557032", "3.86", "3.8")) for line in out.splitlines())
    assert "1727962" in out and "19421274" in out
