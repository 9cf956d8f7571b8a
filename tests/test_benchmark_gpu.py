"""The GPU benchmark's dry run (CPU, tiny fixture models) keeps the script working where no GPU is (no timings are
checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_dry_run_reports_every_case_and_the_fixture_parity(tmp_path):
    report_path = tmp_path / "report.json"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "benchmark_gpu.py"), "--dry-run", "--json", str(report_path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=1800,  # a tiny model, but a shared machine can be slow
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(report_path.read_text())

    assert report["device"]["spec_bf16_tflops"] is None  # a CPU has no entry in the card table
    assert {"float32", "bfloat16"} <= set(report["device"]["matmul_peak"])
    assert all(peak["gflops"] > 0 for peak in report["device"]["matmul_peak"].values())

    # two tasks x eager/compile, each with throughput, memory and counted FLOPs
    cases = {(case["task"], case["mode"]): case for case in report["cases"]}
    assert set(cases) == {(task, mode) for task in ("classification", "pretraining") for mode in ("eager", "compile")}
    for case in cases.values():
        assert case["batch_size"] == 2 and len(case["times_s"]) == 2
        assert case["clips_per_s"] == pytest.approx(2 / case["median_s"])
        assert case["peak_memory_mib"] > 0 and case["flops_per_step"] > 0
        assert case["mfu"] is None and case["share_of_measured_matmul"] > 0
    for task in ("classification", "pretraining"):
        assert cases[(task, "eager")]["flops_per_step"] == cases[(task, "compile")]["flops_per_step"]
        sdpa = cases[(task, "eager")]["sdpa"]
        assert sdpa["ran"] == {"flash (CPU)": sdpa["ran"]["flash (CPU)"]}  # the CPU's fused kernel, nothing else
        assert sdpa["alone"] == {"flash": "runs", "math": "runs"}

    # the official fixtures on the benchmark's device: fp32 within 1e-4 of the official tensors, bf16 measured
    assert set(report["parity"]) == {"tiny_pretrain", "tiny_finetune"}
    assert {"recon_video", "recon_audio", "loss_total"} <= set(report["parity"]["tiny_pretrain"]["tensors_compared"])
    assert {"logits", "feature"} <= set(report["parity"]["tiny_finetune"]["tensors_compared"])
    for fixture in report["parity"].values():
        assert fixture["float32"]["max_abs_vs_official"] <= 1e-4
        assert fixture["float32"]["within_tolerance"] is True
        # bf16 autocast really ran (it differs) and stays a rounding error, not a wrong answer
        assert 0 < fixture["bfloat16_autocast"]["max_rel_vs_official"] < 0.1
    assert "parity tiny_pretrain: fp32" in completed.stdout
