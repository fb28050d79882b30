"""benchmarks/bench_gpu.py, the GPU check, runs end to end on a CPU with its tiny configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_the_gpu_check_runs_tiny_on_a_cpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LCD_ENV", "RAY_ADDRESS", "DAGSTER_HOME", "LCD_HOME")}
    out = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--base", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    for part in ("a. bf16 GEMM", "b. embedding", "c. pre-training, paper recipe", "d. 6 measurements",
                 "ablation table:"):
        assert any(line.startswith(part) or line.strip().startswith(part) for line in lines), part
    table = lines[lines.index("   ablation table:") + 1:]
    assert any(line.strip().startswith("ssl-dino ") for line in table)
    assert any(line.strip().startswith("ssl-pa_dino_barlow_xb ") for line in table)
