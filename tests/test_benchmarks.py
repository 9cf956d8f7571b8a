"""The benchmark scripts run to the end on tiny settings and write the report their documentation describes, so that
they cannot rot between the runs that measure. No timing is asserted: only what the reports must hold whatever the
machine (counted FLOPs, storage per clip, the measurements every report lists)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
# the base model's FLOPs of one classification forward at batch 1, as benchmarks/README.md gives them
BASE_FORWARD_B1_GFLOP = 83.6


def benchmark_report(script: str, tmp_path: Path, *arguments: str, timeout: int = 600) -> dict:
    """Runs `benchmarks/<script>` with `arguments` and returns the report it writes with `--json`."""
    report_path = tmp_path / f"{Path(script).stem}.json"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *arguments, "--json", str(report_path)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(report_path.read_text())


def positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.slow
def test_model_benchmark_counts_the_model_flops_and_reports_every_step(tmp_path):
    report = benchmark_report(
        "benchmark_model.py",
        tmp_path,
        *("--cases", "classification_forward_b1", "--warmup", "0", "--steps", "2"),
    )
    assert positive(report["matmul_peak"]["float32"]["gflops"])
    (result,) = report["results"]["classification_forward_b1/float32"].values()
    assert len(result["times"]) == 2 and all(positive(time) for time in result["times"])
    assert result["flops"] / 1e9 == pytest.approx(BASE_FORWARD_B1_GFLOP, rel=0.005)
    assert positive(result["peak_rss_mib"]) and positive(result["share_of_matmul_peak"])


@pytest.mark.slow
def test_inference_benchmark_reports_the_model_alone_and_end_to_end_with_and_without_workers(tmp_path):
    report = benchmark_report(
        "benchmark_inference.py",
        tmp_path,
        *("--clips", "2", "--batch-size", "2", "--repeats", "1", "--num-workers", "1"),
    )
    assert positive(report["model_alone_windows_per_s"])
    assert sorted(report["end_to_end"]) == ["num_workers=0", "num_workers=1"]
    assert all(
        positive(result["windows_per_s"]) and positive(result["videos_per_s"])
        for result in report["end_to_end"].values()
    )
    assert 0 < report["processing_share_of_end_to_end"] < 1


@pytest.mark.slow
def test_preprocessed_corpus_benchmark_reports_storage_within_the_target_and_every_rate(tmp_path):
    report = benchmark_report(
        "benchmark_preprocessed.py",
        tmp_path,
        *("--sources", "1", "--clips", "2", "--workers", "1", "--batch-size", "2", "--steps", "1"),
        *("--device", "cpu"),
    )
    # the storage target of a preprocessed 3 s clip (benchmarks/README.md): at most 0.3 MB
    assert 0 < report["mb_per_3s_clip"] <= 0.3
    for rate in (
        "preprocess_clips_per_second",
        "read_clips_per_second",
        "pre_cropped_read_clips_per_second",
        "training_loader_clips_per_second",
        "base_train_step_clips_per_second",
    ):
        assert positive(report[rate]), rate


@pytest.mark.slow
def test_processor_benchmark_reports_every_scenario_its_time_shares_and_the_detector(tmp_path):
    report = benchmark_report(
        "benchmark_processor.py",
        tmp_path,
        *("--scenarios", "ac", "--backends", "pyav", "--clips", "4", "--single-clips", "2", "--batch-size", "2"),
        *("--workers", "1", "--num-lfw", "1"),
    )
    assert sorted(report["scenarios"]) == ["a-pyav", "c-pyav"]
    for scenario in report["scenarios"].values():
        assert positive(scenario["clips_per_s_1_process"]) and positive(scenario["clips_per_s_data_loader"])
        shares = scenario["time_shares_1_process"]
        assert set(shares) == {"decode", "face", "fbank", "transforms", "other"}
        assert all(0 <= share <= 1 for share in shares.values())
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.02) and shares["face"] == 0  # no face crop in a, c
    detector = report["detector"]
    assert positive(detector["ms_per_frame_median"])
    # 2 real faces and 1 LFW face, each at 6 sizes and 5 tilts
    assert detector["real_faces_found"][1] == 60 and detector["lfw_upscaled_found"][1] == 30
    assert 0 <= detector["real_faces_found"][0] <= 60 and detector["false_positives"][1] > 0
