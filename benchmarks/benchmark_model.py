"""Speed and memory of AVF-MAE++ on the CPU: median clips/s and peak RSS for the four standard cases.

Each case runs in its own process (so peak memory is the case's own): 2 warm-up steps, then timed steps; the median
and range are reported. Inputs are random tensors of the real shapes.

    python benchmarks/benchmark_model.py --size base --threads 2
    python benchmarks/benchmark_model.py --cases classification_forward_b1 --dtype bfloat16

With --dtype bfloat16 the inference cases run a bf16 model (`model.to(torch.bfloat16)`; inputs stay float32, the
embeddings cast them) and the training cases run under `torch.autocast("cpu", dtype=torch.bfloat16)`.

Figures and the machine they came from are recorded in benchmarks/README.md.
"""

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import time
from collections.abc import Callable


CASES = {
    # name: (batch size, what one step does)
    "classification_forward_b1": (1, "eval forward, no_grad"),
    "classification_forward_b4": (4, "eval forward, no_grad"),
    "classification_train_step_b2": (2, "train forward (drop-path 0.1) + cross-entropy + backward"),
    "pretraining_train_step_b2": (2, "masks + targets + forward + full loss + backward"),
}


def measure(step: Callable[[], None], warmup: int, steps: int) -> list[float]:
    """Seconds per call of `step`, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_step(case: str, size: str, dtype: str, compile_model: bool) -> Callable[[], None]:
    import torch

    from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining, AVFMAEForVideoClassification

    batch_size = CASES[case][0]
    torch_dtype = getattr(torch, dtype)
    pixel_values = torch.randn(batch_size, 16, 3, 160, 160)
    audio_values = torch.randn(batch_size, 1, 256, 128)
    labels = torch.randint(0, 11, (batch_size,))

    if case.startswith("pretraining"):
        model = AVFMAEForPreTraining(AVFMAEConfig.from_size(size)).train()
        generator = torch.Generator().manual_seed(0)

        def run():
            return model(pixel_values, audio_values, generator=generator).loss

    else:
        training = "train" in case
        config = AVFMAEConfig.from_size(size, num_labels=11, drop_path_rate=0.1 if training else 0.0)
        model = AVFMAEForVideoClassification(config).train(training)

        def run():
            outputs = model(pixel_values, audio_values, labels=labels if training else None)
            return outputs.loss if training else outputs.logits

    inference = case.startswith("classification_forward")
    if inference:
        # inference keeps the weights themselves in the chosen precision; training uses autocast (mixed precision)
        model.to(torch_dtype)
    if compile_model:
        model.forward = torch.compile(model.forward)

    autocast = torch.autocast("cpu", dtype=torch_dtype, enabled=torch_dtype != torch.float32 and not inference)

    def step():
        if inference:
            with torch.no_grad():
                run()
        else:
            with autocast:
                loss = run()
            loss.backward()
            model.zero_grad(set_to_none=True)

    return step


def run_case(case: str, size: str, threads: int, dtype: str, compile_model: bool, warmup: int, steps: int, queue):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    step = build_step(case, size, dtype, compile_model)
    times = measure(step, warmup, steps)
    queue.put({"times": times, "peak_rss_mib": peak_rss_mib(), "torch": torch.__version__})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base", choices=["base", "large", "huge"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model's forward")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    results = {}
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, {args.size}, {args.dtype}")
    print("| case | batch | median s/step | min–max s | clips/s | peak RSS MiB |\n|---|---|---|---|---|---|")
    for case in args.cases:
        queue = context.Queue()
        process = context.Process(
            target=run_case,
            args=(case, args.size, args.threads, args.dtype, args.compile, args.warmup, args.steps, queue),
        )
        process.start()
        result = queue.get()
        process.join()
        times = result["times"]
        median = statistics.median(times)
        batch_size = CASES[case][0]
        results[case] = {**result, "median_s": median, "clips_per_s": batch_size / median}
        print(
            f"| {case} | {batch_size} | {median:.3f} | {min(times):.3f}–{max(times):.3f} | "
            f"{batch_size / median:.2f} | {result['peak_rss_mib']:,.0f} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
