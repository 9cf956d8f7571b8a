"""End-to-end inference speed (decode + face crop + fbank + model) against the model alone, in the same run.

Both go through the library's public inference functions: `predict_videos` (processor then model, `--batch-size`
videos at a time) for end to end, and `predict_processed` on one batch the processor already made for the model
alone, with the same model, batch size, threads and videos. The difference is what the processor costs.

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

from avfmae_hf.inference_avfmae import load_classifier, predict_processed, predict_videos, sample_video_path


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
    inputs = processor(videos=videos[: args.batch_size], return_tensors="pt", **processor_kwargs)
    inputs = {name: value.to(device) if isinstance(value, torch.Tensor) else value for name, value in inputs.items()}
    names = [str(video) for video in videos[: args.batch_size]]
    predict_processed(model, inputs, names)  # warm-up
    model_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        predict_processed(model, inputs, names)
        synchronize()
        model_times.append(time.perf_counter() - start)
    model_clips_per_s = len(names) / statistics.median(model_times)

    # end to end: the processor reads and prepares every video, then the model runs, batch by batch
    end_to_end_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        predictions = predict_videos(videos, model, processor, batch_size=args.batch_size, **processor_kwargs)
        synchronize()
        end_to_end_times.append(time.perf_counter() - start)
    end_to_end_clips_per_s = len(videos) / statistics.median(end_to_end_times)
    processing_share = statistics.mean(p.timings["processing_s"] for p in predictions) / (
        statistics.median(end_to_end_times) / len(videos)
    )

    results = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "args": vars(args),
        "model_alone_clips_per_s": model_clips_per_s,
        "end_to_end_clips_per_s": end_to_end_clips_per_s,
        "processing_share_of_end_to_end": processing_share,
        "model_times_s": model_times,
        "end_to_end_times_s": end_to_end_times,
    }
    print(f"{results['machine']}, {args.threads} threads, {args.size}, {args.dtype}, batch {args.batch_size}")
    print("| measurement | clips/s |\n|---|---:|")
    print(f"| model alone (`predict_processed`) | {model_clips_per_s:.2f} |")
    print(f"| end to end (`predict_videos`: decode + face + fbank + model) | {end_to_end_clips_per_s:.2f} |")
    print(f"processor share of end-to-end time: {processing_share:.0%}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
