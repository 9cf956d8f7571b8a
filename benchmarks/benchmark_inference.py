"""End-to-end inference speed (decode + face crop + fbank + model) against the model alone, in the same run.

Both go through the library's public inference functions: `predict_videos` (processor then model, `--batch-size`
windows at a time across videos) for end to end, and for the model alone its forward (`inference_mode`) on one batch
of `--batch-size` windows the processor already made, with the same model, threads, videos and windows (the sliding
windows `avfmae predict` uses). Rates are windows per second, the model's unit of work; end to end also in videos
per second. The difference is what the processor costs.
End to end is measured twice: decoding in the model's process (`num_workers=0`), and with `--num-workers` worker
processes decoding the next videos while the model runs (what `avfmae predict` does by default).

    python benchmarks/benchmark_inference.py --size base --threads 2
    python benchmarks/benchmark_inference.py --videos a.mp4 b.mp4 --dtype bfloat16 --batch-size 8
    python benchmarks/benchmark_inference.py --no-face-crop --device cuda

Without `--videos` the package's sample clip is used (a 640x360 talking face with audio, so the face crop runs).
The model is freshly initialised unless `--model` names a converted folder (speed does not depend on the weights).
"""

import argparse
import json
import platform
import statistics
import time

import torch

from avfmae_hf.inference_avfmae import DEFAULT_SAMPLING_MODE, load_classifier, predict_videos, sample_video_path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="converted model folder (default: a fresh model of --size)")
    parser.add_argument("--size", default="base", choices=["base", "large", "huge"])
    parser.add_argument("--videos", nargs="+", help="video files (default: the package's sample clip)")
    parser.add_argument("--clips", type=int, default=8, help="videos per end-to-end pass (the list is repeated)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-face-crop", action="store_true", help="videos are already face crops")
    parser.add_argument("--num-workers", type=int, default=2, help="decoding processes of the overlapped pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each measurement (median)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, processor, _ = load_classifier(args.model, size=args.size)
    model.to(device=device, dtype=getattr(torch, args.dtype))
    videos = list(args.videos or [str(sample_video_path())])
    videos = (videos * args.clips)[: args.clips]
    processor_kwargs = {"do_face_crop": False} if args.no_face_crop else {}

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # the model alone: one processed batch, moved to the device once
    inputs = processor(
        videos=videos[: args.batch_size], sampling_mode=DEFAULT_SAMPLING_MODE, return_tensors="pt", **processor_kwargs
    )
    model_inputs = {
        name: inputs[name][: args.batch_size].to(device) for name in ("pixel_values", "audio_values") if name in inputs
    }
    batch_windows = model_inputs["pixel_values"].shape[0]

    def forward():
        with torch.inference_mode():
            model(**model_inputs)
        synchronize()

    forward()  # warm-up
    model_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        forward()
        model_times.append(time.perf_counter() - start)
    model_windows_per_s = batch_windows / statistics.median(model_times)

    # end to end: the processor reads and prepares every video and the model runs batch by batch, first in this
    # process, then with worker processes decoding while the model runs
    end_to_end = {}
    for num_workers in dict.fromkeys([0, args.num_workers]):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            predictions = predict_videos(
                videos, model, processor, batch_size=args.batch_size, num_workers=num_workers, **processor_kwargs
            )
            synchronize()
            times.append(time.perf_counter() - start)
        num_windows = sum(len(prediction.windows) for prediction in predictions)
        end_to_end[num_workers] = {
            "windows_per_s": num_windows / statistics.median(times),
            "videos_per_s": len(videos) / statistics.median(times),
            "times_s": times,
        }
        if num_workers == 0:  # the processor's own time is only measured where it runs in this process
            processing_share = statistics.mean(p.timings["processing_s"] for p in predictions) / (
                statistics.median(times) / len(videos)
            )

    results = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "args": vars(args),
        "model_alone_windows_per_s": model_windows_per_s,
        "end_to_end": {f"num_workers={workers}": result for workers, result in end_to_end.items()},
        "processing_share_of_end_to_end": processing_share,
        "model_times_s": model_times,
    }
    print(f"{results['machine']}, {args.threads} threads, {args.size}, {args.dtype}, batch {args.batch_size}")
    print("| measurement | windows/s | videos/s |\n|---|---:|---:|")
    print(f"| model alone (forward on a processed batch) | {model_windows_per_s:.2f} | |")
    for workers, result in end_to_end.items():
        where = (
            "decoding in the model's process" if workers == 0 else f"{workers} decoding worker{'s' * (workers > 1)}"
        )
        rates = f"{result['windows_per_s']:.2f} | {result['videos_per_s']:.2f}"
        print(f"| end to end (`predict_videos`: decode + face + fbank + model), {where} | {rates} |")
    print(f"processor share of end-to-end time without workers: {processing_share:.0%}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
