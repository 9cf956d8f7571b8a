"""Speed and memory of AVF-MAE++ on the CPU for the four standard cases, optionally beside the official code.

Each case runs in its own process (so peak memory is the case's own): warm-up steps, then timed steps; the median
and range are reported. Inputs are random tensors of the real shapes, the same for every process (seeded); the
pretraining masks are drawn once with the model's own strategies and given to the step.

    python benchmarks/benchmark_model.py --size base --threads 2
    python benchmarks/benchmark_model.py --cases classification_forward_b1 --dtype bfloat16
    python benchmarks/benchmark_model.py --official-dir ~/AVF-MAE --dtype float32 bfloat16
    python benchmarks/benchmark_model.py --cases pretraining_train_step_b2 --steps 1 --profile 25

With --dtype bfloat16 the inference cases run a bf16 model (`model.to(torch.bfloat16)`; inputs stay float32, the
embeddings cast them) and the training cases run under `torch.autocast("cpu", dtype=torch.bfloat16)`.

With --official-dir PATH (a checkout of the official AVF-MAE++ code at revision 7246ea2, whose model files run as
they are; the four timm helpers they import are replaced by small stand-ins, see `model_steps.py`), every case is
timed for the official model and for this package, one process each, with the same inputs, thread count and
harness, the two processes taking timed steps in turn (official, ours, ours, official, ...), so that the speed-up
compares steps taken moments apart on a shared machine whose speed drifts; the official pretraining step computes its engine's targets and loss. The table gives both, the
speed-up (official time / ours) and the share of the machine's `torch.mm` peak each reaches (FLOPs of the step
counted once with `torch.utils.flop_counter`; fp32 and bf16 peaks measured in this run, with the same threads).

Figures and the machine they came from are recorded in benchmarks/README.md.
"""

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import time


CASES = {
    # name: (task, batch size, train, what one step does)
    "classification_forward_b1": ("classification", 1, False, "eval forward, no_grad"),
    "classification_forward_b4": ("classification", 4, False, "eval forward, no_grad"),
    "classification_train_step_b2": (
        "classification",
        2,
        True,
        "train forward (drop-path 0.1) + cross-entropy + backward",
    ),
    "pretraining_train_step_b2": ("pretraining", 2, True, "targets + forward + full loss + backward"),
}
IMPLEMENTATIONS = ("official", "ours")


PAUSE_S = 0.05  # between two steps: lets the other process's OpenMP threads stop spinning


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve_steps(implementation: str, case: str, args: dict, dtype: str, connection) -> None:
    """One implementation on one case, in a fresh process: builds the step, runs the warm-up steps, says "ready",
    then runs one timed step per "step" it receives (answering its seconds) until "finish", when it answers its peak
    memory (and the step's FLOPs or profile when asked)."""
    import contextlib
    import io

    import torch
    from model_steps import compile_layers, count_flops, official_step, our_step

    torch.set_num_threads(args["threads"])
    task, batch_size, train, _ = CASES[case]
    common = {"task": task, "batch_size": batch_size, "train": train, "precision": dtype}
    if implementation == "official":
        with contextlib.redirect_stdout(io.StringIO()):  # the official constructors print their settings
            step = official_step(args["official_dir"], args["size"], **common)
    else:
        step = our_step(args["size"], **common)
        if args["compile"]:
            compile_layers(step.model, "inductor")
    for _ in range(args["warmup"]):
        step()
    connection.send("ready")
    while connection.recv() == "step":
        start = time.perf_counter()
        step()
        connection.send(time.perf_counter() - start)
    result = {"peak_rss_mib": peak_rss_mib(), "torch": torch.__version__}
    if args["profile"] and implementation == "ours":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            step()
        result["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args["profile"])
    if args["count_flops"]:
        result["flops"] = count_flops(step)
    connection.send(result)


def interleaved(implementations: tuple[str, ...], case: str, args: dict, dtype: str) -> dict[str, dict]:
    """Times `implementations` on `case`, one process each, all alive at once and stepping in turn (A B, B A, A B,
    ...), so that a slower or faster spell of a shared machine falls on both alike; one process at a time computes.
    FLOPs are counted in this package's process: both implementations compute the same model."""
    context = multiprocessing.get_context("spawn")
    connections, processes = {}, {}
    for implementation in implementations:
        connections[implementation], child = context.Pipe()
        settings = {**args, "count_flops": implementation == "ours"}
        processes[implementation] = context.Process(
            target=serve_steps, args=(implementation, case, settings, dtype, child)
        )
        processes[implementation].start()
        # warm-ups run one process at a time too, so neither builds its caches on a loaded machine
        if connections[implementation].recv() != "ready":
            raise RuntimeError(f"the {implementation} process did not start")
    times = {implementation: [] for implementation in implementations}
    for index in range(args["steps"]):
        order = implementations if index % 2 == 0 else tuple(reversed(implementations))
        for implementation in order:
            time.sleep(PAUSE_S)
            connections[implementation].send("step")
            times[implementation].append(connections[implementation].recv())
    results = {}
    for implementation in implementations:
        connections[implementation].send("finish")
        result = connections[implementation].recv()
        processes[implementation].join()
        result["times"] = times[implementation]
        result["median_s"] = statistics.median(result["times"])
        result["clips_per_s"] = CASES[case][1] / result["median_s"]
        results[implementation] = result
    return results


def spread(result: dict) -> str:
    return f"{result['median_s']:.3f} [{min(result['times']):.3f}–{max(result['times']):.3f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base", choices=["base", "large", "huge"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile this package's layers (not official)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--official-dir", help="checkout of the official AVF-MAE++ code (revision 7246ea2) to time beside this package"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="ROWS",
        help="print torch.profiler's top ROWS ops of one step of ours",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    import torch
    from matmul_peak import matmul_peaks

    torch.set_num_threads(args.threads)
    peaks = matmul_peaks("cpu", seconds=1.0)
    implementations = IMPLEMENTATIONS if args.official_dir else ("ours",)
    settings = {**vars(args), "count_flops": False}
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} threads, {args.size}; torch.mm peak fp32 "
        f"{peaks['float32']['gflops']:.0f}, bf16 {peaks['bfloat16']['gflops']:.0f} GFLOP/s"
    )
    columns = ["case", "dtype", "batch"]
    for implementation in implementations:
        columns += [f"{implementation} s/step", f"{implementation} clips/s", f"{implementation} % of mm peak"]
        columns += [f"{implementation} peak RSS MiB"]
    if args.official_dir:
        columns.append("speed-up")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns), flush=True)

    results = {}
    for dtype in args.dtype:
        for case in args.cases:
            row = interleaved(implementations, case, settings, dtype)
            flops = row["ours"]["flops"]
            for result in row.values():
                result["flops"] = flops
                result["share_of_matmul_peak"] = flops / result["median_s"] / (peaks[dtype]["gflops"] * 1e9)
            results[f"{case}/{dtype}"] = row
            cells = [case, dtype, str(CASES[case][1])]
            for implementation in implementations:
                result = row[implementation]
                cells += [spread(result), f"{result['clips_per_s']:.2f}", f"{result['share_of_matmul_peak']:.0%}"]
                cells.append(f"{result['peak_rss_mib']:,.0f}")
            if args.official_dir:
                cells.append(f"**{row['official']['median_s'] / row['ours']['median_s']:.2f}x**")
            print("| " + " | ".join(cells) + " |", flush=True)
            if "profile" in row["ours"]:
                print(f"\n{case}, {dtype}, one step of ours:\n{row['ours'].pop('profile')}", flush=True)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), "matmul_peak": peaks, "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
