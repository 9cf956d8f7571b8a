"""Training throughput of AVF-MAE++ on one GPU: clips/s, peak memory and model FLOP utilisation (MFU) in bf16.

    python benchmarks/benchmark_gpu.py --json gpu.json            # the full run, under 8 minutes on an H100/H200
    python benchmarks/benchmark_gpu.py --dry-run --json dry.json  # everything on the CPU with tiny models, about a minute

For each size (base, huge) and step - the classification train step (batch 32: train mode, drop-path 0.1,
cross-entropy, backward, AdamW step) and the pretraining train step (batch 64: the model's own masks given as inputs,
targets, forward, full loss, backward, AdamW step) - under bf16 autocast over fp32 weights, eager and with
`torch.compile` (each repeated layer compiled on its own, which compiles each layer class once):

- median seconds per step over the timed steps (after warm-up, which includes compilation), clips/s;
- peak memory (`torch.cuda.max_memory_allocated`; peak RSS of the process on CPU);
- MFU: FLOPs of one step counted with `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions and
  attention, forward and backward) per second, as a share of the card's dense bf16 peak from its data sheet
  (`DENSE_BF16_TFLOPS`, matched by device name) and of the bf16 `torch.mm` peak measured in the same run;
- which SDPA kernel ran (the `aten` attention ops the profiler records in one eager step, with their counts), and
  which of flash / memory-efficient / cuDNN / math can run the step on its own (`torch.nn.attention.sdpa_kernel`).

Before the timings, the official fixtures (`tests/fixtures/official/tiny_pretrain`, `tiny_finetune`) run on the
device in fp32 and under bf16 autocast: the largest absolute difference of every forward output from the official
tensors and from the same model on the CPU (fp32 must stay within 1e-4; the bf16 error is measured and printed).

`--dry-run` runs all of it on the CPU with the tiny fixture models (batch 2, 2 timed steps, the dynamo "eager"
compile backend), so the test suite keeps the script working without a GPU.
"""

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from matmul_peak import matmul_peaks
from model_steps import OFFICIAL_FIXTURES, Step, compile_layers, count_flops, our_step, synchronize
from safetensors.torch import load_file

from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining, AVFMAEForVideoClassification, convert_original_state_dict
from avfmae_hf.checkpoint_avfmae import reference_outputs
from avfmae_hf.original_config_avfmae import config_from_original


# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; the first name contained in
# `torch.cuda.get_device_name()` wins, so more specific names come first.
DENSE_BF16_TFLOPS = {
    "GB200": 2500.0,
    "B200": 2250.0,
    "GH200": 989.4,
    "H200": 989.4,
    "H100 PCIe": 756.5,
    "H100 NVL": 835.5,
    "H100": 989.4,
    "H800": 989.4,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 6000 Ada": 364.2,
}
BATCH_SIZES = {"classification": 32, "pretraining": 64}
PARITY_FP32_TOLERANCE = 1e-4
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


def spec_bf16_tflops(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its data-sheet dense bf16 peak (None when the card is not in the table or on CPU)."""
    if device.type != "cuda":
        return platform.processor() or platform.machine(), None
    name = torch.cuda.get_device_name(device)
    for key, tflops in DENSE_BF16_TFLOPS.items():
        if key in name:
            return name, tflops
    return name, None


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def time_step(step: Step, warmup: int, steps: int) -> tuple[list[float], float]:
    """Seconds of each timed step and of the whole warm-up."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(step.device)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(step.device)
        times.append(time.perf_counter() - start)
    return times, warmup_s


def sdpa_backends(step: Step) -> dict:
    """Which attention kernels one eager step runs by default, and which backends can run the whole step alone."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    # the optimizer step has no attention; leaving it out keeps these extra steps short
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step(optimizer_step=False)
        synchronize(step.device)
    ran = {}
    for event in profiler.key_averages():
        if event.key in SDPA_OPS:
            ran[SDPA_OPS[event.key]] = ran.get(SDPA_OPS[event.key], 0) + event.count
    candidates = {"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}
    if step.device.type == "cuda":
        candidates.update({"memory-efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION})
    alone = {}
    for name, backend in candidates.items():
        try:
            with sdpa_kernel([backend]):
                step(optimizer_step=False)
                synchronize(step.device)
            alone[name] = "runs"
        except RuntimeError as error:
            alone[name] = f"fails: {str(error).strip().splitlines()[0][:160]}"
    return {"ran": ran, "alone": alone}


def run_case(
    size, task: str, batch_size: int, mode: str, args, device: torch.device, peak_tflops, measured_tflops
) -> dict:
    reset_memory(device)
    step = our_step(size, task, batch_size, train=True, precision=args.precision, device=device, optimizer=True)
    if mode == "compile":
        compile_layers(step.model, args.compile_backend)
    times, warmup_s = time_step(step, args.warmup, args.steps)
    median = statistics.median(times)
    result = {
        "size": size if isinstance(size, str) else "tiny",
        "task": task,
        "mode": mode,
        "batch_size": batch_size,
        "precision": "bfloat16 autocast" if args.precision == "bfloat16" else "float32",
        "warmup_s": warmup_s,
        "times_s": times,
        "median_s": median,
        "clips_per_s": batch_size / median,
        "peak_memory_mib": peak_memory_mib(device),
    }
    flops = count_flops(step)
    achieved = flops / median / 1e12
    result.update(
        {
            "flops_per_step": flops,
            "achieved_tflops": achieved,
            "mfu": achieved / peak_tflops if peak_tflops else None,
            "share_of_measured_matmul": achieved / measured_tflops,
        }
    )
    if mode == "eager":
        result["sdpa"] = sdpa_backends(step)
    del step
    if mode == "compile":
        torch._dynamo.reset()
    return result


def fixture_model(fixture: str, device: torch.device):
    description = json.loads((OFFICIAL_FIXTURES / fixture / "config.json").read_text())
    config = config_from_original(description["constructor_kwargs"])
    config._attn_implementation = "sdpa"
    model_class = AVFMAEForPreTraining if fixture == "tiny_pretrain" else AVFMAEForVideoClassification
    model = model_class(config).eval()
    model.load_state_dict(
        convert_original_state_dict(load_file(OFFICIAL_FIXTURES / fixture / "state_dict.safetensors"), config)
    )
    return model.to(device)


def largest_differences(actual: dict, expected: dict) -> tuple[float, float, str]:
    """Largest absolute difference over all compared tensors, the largest one relative to the tensor's largest
    magnitude, and the tensor where the absolute one occurs."""
    worst_abs, worst_rel, worst_name = 0.0, 0.0, ""
    for name, value in expected.items():
        difference = (actual[name].detach().float().cpu() - value.float()).abs().max().item()
        relative = difference / max(value.float().abs().max().item(), 1e-12)
        if difference >= worst_abs:
            worst_abs, worst_name = difference, name
        worst_rel = max(worst_rel, relative)
    return worst_abs, worst_rel, worst_name


def parity(device: torch.device) -> dict:
    """The official fixtures on `device` (fp32, bf16 autocast) against the official tensors and against the CPU."""
    report = {}
    for fixture in ("tiny_pretrain", "tiny_finetune"):
        inputs = load_file(OFFICIAL_FIXTURES / fixture / "inputs.safetensors")
        expected_all = load_file(OFFICIAL_FIXTURES / fixture / "outputs.safetensors")
        cpu_outputs = reference_outputs(fixture_model(fixture, torch.device("cpu")), inputs)
        names = sorted(set(cpu_outputs) & set(expected_all))
        expected = {name: expected_all[name] for name in names}
        model = fixture_model(fixture, device)
        device_inputs = {name: value.to(device) for name, value in inputs.items()}
        fp32 = reference_outputs(model, device_inputs)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = reference_outputs(model, device_inputs)
        fp32_abs, fp32_rel, fp32_name = largest_differences(fp32, expected)
        cpu_abs, _, _ = largest_differences(fp32, {name: cpu_outputs[name] for name in names})
        bf16_abs, bf16_rel, bf16_name = largest_differences(bf16, expected)
        report[fixture] = {
            "tensors_compared": names,
            "float32": {
                "max_abs_vs_official": fp32_abs,
                "max_rel_vs_official": fp32_rel,
                "worst_tensor": fp32_name,
                "max_abs_vs_cpu": cpu_abs,
                "within_tolerance": fp32_abs <= PARITY_FP32_TOLERANCE and cpu_abs <= PARITY_FP32_TOLERANCE,
            },
            "bfloat16_autocast": {
                "max_abs_vs_official": bf16_abs,
                "max_rel_vs_official": bf16_rel,
                "worst_tensor": bf16_name,
            },
        }
    return report


def print_report(report: dict) -> None:
    device = report["device"]
    print(
        f"\n{device['name']}: data-sheet dense bf16 {device['spec_bf16_tflops'] or 'unknown'} TFLOP/s; measured "
        f"torch.mm fp32 {device['matmul_peak']['float32']['gflops'] / 1e3:.1f}, "
        f"bf16 {device['matmul_peak']['bfloat16']['gflops'] / 1e3:.1f} TFLOP/s; torch {report['torch']}"
    )
    for fixture, result in report["parity"].items():
        fp32, bf16 = result["float32"], result["bfloat16_autocast"]
        print(
            f"parity {fixture}: fp32 max |diff| {fp32['max_abs_vs_official']:.2e} vs official, "
            f"{fp32['max_abs_vs_cpu']:.2e} vs CPU ({'ok' if fp32['within_tolerance'] else 'FAILED'}, tolerance "
            f"{PARITY_FP32_TOLERANCE}); bf16 autocast max |diff| {bf16['max_abs_vs_official']:.2e} "
            f"({bf16['max_rel_vs_official']:.1%} of the largest value, {bf16['worst_tensor']})"
        )
    print(
        "\n| size | step | batch | mode | median s | clips/s | peak MiB | TFLOP/s | MFU | share of measured mm | SDPA ran |"
        "\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for case in report["cases"]:
        mfu = f"{case['mfu']:.1%}" if case["mfu"] is not None else "-"
        sdpa = ", ".join(f"{name} x{count}" for name, count in case.get("sdpa", {}).get("ran", {}).items()) or "-"
        print(
            f"| {case['size']} | {case['task']} | {case['batch_size']} | {case['mode']} | {case['median_s']:.4f} | "
            f"{case['clips_per_s']:.1f} | {case['peak_memory_mib']:,.0f} | {case['achieved_tflops']:.1f} | {mfu} | "
            f"{case['share_of_measured_matmul']:.1%} | {sdpa} |"
        )
    for case in report["cases"]:
        if "sdpa" in case:
            print(f"SDPA alone, {case['size']} {case['task']}: {case['sdpa']['alone']}")
    print(f"\n{report['args']['precision']} steps; total {report['total_s']:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", nargs="+", default=["base", "huge"], choices=["base", "large", "huge"])
    parser.add_argument("--tasks", nargs="+", default=["classification", "pretraining"], choices=list(BATCH_SIZES))
    parser.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    parser.add_argument("--classification-batch-size", type=int, default=BATCH_SIZES["classification"])
    parser.add_argument("--pretraining-batch-size", type=int, default=BATCH_SIZES["pretraining"])
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument(
        "--precision",
        choices=["bfloat16", "float32"],
        help="training precision of the timed steps (default bfloat16; float32 with --dry-run, because CPUs without "
        "AVX512-BF16/AMX only emulate bf16 and would take minutes)",
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny fixture models, batch 2, 2 steps")
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()
    start = time.perf_counter()

    sizes: list = args.sizes
    batch_sizes = {"classification": args.classification_batch_size, "pretraining": args.pretraining_batch_size}
    if args.dry_run:
        args.device, args.warmup, args.steps, args.compile_backend = "cpu", 1, 2, "eager"
        args.precision = args.precision or "float32"
        batch_sizes = {"classification": 2, "pretraining": 2}
        sizes = ["tiny"]
    args.precision = args.precision or "bfloat16"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmark_gpu.py: no CUDA device is visible (use --dry-run to check the script on the CPU).")
    name, spec = spec_bf16_tflops(device)
    peaks = matmul_peaks(device, seconds=0.3 if args.dry_run else 2.0)  # IEEE fp32, before TF32 is allowed
    # TF32 for the fp32 matrix products that remain under autocast, as users of Ampere and later cards run them
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    # the share of the measured peak is taken against the dtype the matrix products run in
    measured_tflops = peaks[args.precision]["gflops"] / 1e3
    report = {
        "device": {"name": name, "spec_bf16_tflops": spec, "matmul_peak": peaks},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "args": vars(args),
        "parity": parity(device),
        "cases": [],
    }
    for size in sizes:
        for task in args.tasks:
            config = fixture_model_config(task) if size == "tiny" else size
            for mode in args.modes:
                case_start = time.perf_counter()
                result = run_case(config, task, batch_sizes[task], mode, args, device, spec, measured_tflops)
                result["size"] = size
                result["case_s"] = time.perf_counter() - case_start
                report["cases"].append(result)
                print(
                    f"{size} {task} {mode}: {result['clips_per_s']:.1f} clips/s ({result['case_s']:.0f} s)", flush=True
                )
    report["total_s"] = time.perf_counter() - start
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def fixture_model_config(task: str) -> AVFMAEConfig:
    """The tiny official fixture's configuration for a dry run (classification: drop-path 0.1 as in fine-tuning)."""
    fixture = "tiny_pretrain" if task == "pretraining" else "tiny_finetune"
    description = json.loads((OFFICIAL_FIXTURES / fixture / "config.json").read_text())
    config = config_from_original(description["constructor_kwargs"])
    if task == "classification":
        config.drop_path_rate = 0.1
    return config


if __name__ == "__main__":
    main()
