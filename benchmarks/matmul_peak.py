"""The machine's measured matrix-multiply peak, the yardstick the model benchmarks report their share of.

A square `torch.mm` of a size large enough to fill the cores (or the GPU's tensor cores) is repeated for a fixed time;
the best repetition gives FLOP/s (`2 * n**3` per product). Run it in the same process and with the same thread count
as the model being judged, right before or after it, because a shared machine's speed drifts.

    python benchmarks/matmul_peak.py --device cpu --threads 2
    python benchmarks/matmul_peak.py --device cuda
"""

import argparse
import json
import time


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device="cpu", dtype="float32", max_size: int | None = None, seconds: float = 1.0) -> dict:
    """Best sustained `torch.mm` throughput of square `dtype` matrices on `device`, in GFLOP/s.

    The size doubles from 256 up to `max_size` (2048 on CPU, 8192 on CUDA) while one product stays short, so a dtype
    the hardware only emulates (bf16 on a CPU without AVX512-BF16/AMX) is measured on a smaller size instead of taking
    minutes. Returns `{"dtype", "size", "gflops"}`; a dtype the device cannot multiply raises torch's error.
    """
    import torch

    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    device = torch.device(device)
    max_size = max_size or (8192 if device.type == "cuda" else 2048)
    generator = torch.Generator(device=device).manual_seed(0)

    def timed(size: int, repeats: int) -> float:
        left = torch.randn(size, size, device=device, dtype=torch_dtype, generator=generator)
        right = torch.randn(size, size, device=device, dtype=torch_dtype, generator=generator)
        torch.mm(left, right)  # kernel selection, first touch of the pages
        synchronize(device)
        best, deadline = float("inf"), time.perf_counter() + seconds
        while True:
            start = time.perf_counter()
            for _ in range(repeats):
                torch.mm(left, right)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
            if time.perf_counter() >= deadline or best > seconds / 4:
                return best

    size = 256
    while size < max_size and timed(size, 1) < seconds / 50:
        size *= 2
    # several products per timing so that launch and timer overheads vanish on fast devices
    repeats = 1
    while repeats < 1024 and timed(size, repeats) < 0.02:
        repeats *= 4
    best = timed(size, repeats)
    return {
        "dtype": str(torch_dtype).removeprefix("torch."),
        "size": size,
        "gflops": 2 * size**3 * repeats / best / 1e9,
    }


def matmul_peaks(device="cpu", seconds: float = 1.0, max_size: int | None = None) -> dict[str, dict]:
    """fp32 and bf16 peaks of `device`, keyed by dtype name."""
    return {dtype: matmul_peak(device, dtype, max_size=max_size, seconds=seconds) for dtype in ("float32", "bfloat16")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--max-size", type=int, default=None, help="largest matrix side tried")
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent per dtype")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = matmul_peaks(args.device, seconds=args.seconds, max_size=args.max_size)
    print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), **peaks}, indent=1))


if __name__ == "__main__":
    main()
