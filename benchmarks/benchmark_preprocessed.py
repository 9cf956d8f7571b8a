"""Training from a preprocessed corpus (`avfmae preprocess`): read speed, storage, and whether the data loader keeps up
with the base model's train step, measured in the same run on the same machine.

1. Writes `--sources` 3 s 640x360 talking-face clips with audio (tests/media/synthetic.py) and preprocesses them.
2. Storage: the mean size of a preprocessed 3 s clip (MB).
3. Reading: an `AVFMAEVideoDataset` over the preprocessed folder (uniform sampling, no augmentation) through a
   `DataLoader` with `--workers` workers and batch `--batch-size` (clips/s); beside it, in the same run and loader,
   the pre-cropped path: the same talking face written as 160x160 H.264 + AAC clips as a face-crop corpus comes
   (`face_cropped` entries, read exactly like the preprocessed ones).
4. The training data loader: the pretraining dataset ("train" sampling, the official pretraining augmentation and
   audio gain jitter), same loader (clips/s).
5. The base model's pretraining train step (forward, loss, backward, AdamW) at batch `--batch-size` on `--device`
   (clips/s).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from avfmae_hf import AVFMAEProcessor  # noqa: E402
from avfmae_hf.augmentation_avfmae import PretrainingAugmentation  # noqa: E402
from avfmae_hf.preprocessing_avfmae import preprocess_corpus  # noqa: E402
from avfmae_hf.training_avfmae import (  # noqa: E402
    AVFMAEDataCollator,
    AVFMAEPretrainingDataset,
    AVFMAEVideoDataset,
    ListEntry,
    read_list_file,
)
from benchmarks.model_steps import our_step, synchronize  # noqa: E402
from tests.media import synthetic  # noqa: E402


FPS = 25.0
DURATION = 3.0


def single_thread_worker(_):
    torch.set_num_threads(1)


def write_sources(directory: str, count: int) -> list:
    frames, _ = synthetic.talking_face_frames(num_frames=int(DURATION * FPS), face_size=120)
    entries = []
    for index in range(count):
        audio = synthetic.speech_like_audio(DURATION, seed=index)
        path = synthetic.write_video(os.path.join(directory, f"source_{index}.mp4"), frames, FPS, audio)
        entries.append(ListEntry(path, None, index % 2))
    return entries


def write_pre_cropped(directory: str, count: int) -> list:
    """160x160 face clips with AAC audio, as a corpus of face crops made elsewhere comes."""
    frames, _ = synthetic.talking_face_frames(num_frames=int(DURATION * FPS), height=160, width=160, face_size=110)
    entries = []
    for index in range(count):
        audio = synthetic.speech_like_audio(DURATION, seed=index)
        path = synthetic.write_video(os.path.join(directory, f"cropped_{index}.mp4"), frames, FPS, audio)
        entries.append(ListEntry(path, None, index % 2, face_cropped=True))
    return entries


def loader_clips_per_second(dataset, num_clips: int, batch_size: int, workers: int) -> float:
    # `num_clips` timed clips after a first, untimed batch
    repeats = -(-(num_clips + batch_size) // len(dataset))
    dataset = torch.utils.data.ConcatDataset([dataset] * repeats)
    dataset = torch.utils.data.Subset(dataset, range(num_clips + batch_size))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=AVFMAEDataCollator(),
        worker_init_fn=single_thread_worker,
        persistent_workers=workers > 0,
    )
    iterator = iter(loader)
    next(iterator)  # warm-up: workers start and import
    start = time.perf_counter()
    clips = sum(batch["pixel_values"].shape[0] for batch in iterator)
    return clips / (time.perf_counter() - start)


def train_step_clips_per_second(batch_size: int, steps: int, device: str) -> float:
    step = our_step("base", "pretraining", batch_size, train=True, device=device, optimizer=True)
    step()  # warm-up
    synchronize(step.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(step.device)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=8, help="source clips to preprocess")
    parser.add_argument("--clips", type=int, default=320, help="clips per data loader measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="train steps to time")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    processor = AVFMAEProcessor()
    with tempfile.TemporaryDirectory() as directory:
        entries = write_sources(directory, args.sources)
        output = os.path.join(directory, "preprocessed")
        start = time.perf_counter()
        report = preprocess_corpus(entries, output, processor=processor, num_workers=args.workers)
        preprocess_seconds = time.perf_counter() - start
        clips = read_list_file(output)
        sizes = [os.path.getsize(entry.video) for entry in clips]
        reading = AVFMAEVideoDataset(clips, processor)
        training = AVFMAEPretrainingDataset(
            clips, processor, seed=0, audio_gain_jitter=True, augmentation=PretrainingAugmentation()
        )
        pre_cropped = AVFMAEVideoDataset(write_pre_cropped(directory, args.sources), processor)
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            "preprocess_clips_per_second": report.num_written / preprocess_seconds,
            "mb_per_3s_clip": sum(sizes) / len(sizes) / 1e6,
            "read_clips_per_second": loader_clips_per_second(reading, args.clips, args.batch_size, args.workers),
            "pre_cropped_read_clips_per_second": loader_clips_per_second(
                pre_cropped, args.clips, args.batch_size, args.workers
            ),
            "training_loader_clips_per_second": loader_clips_per_second(
                training, args.clips, args.batch_size, args.workers
            ),
        }
    results["base_train_step_clips_per_second"] = train_step_clips_per_second(args.batch_size, args.steps, args.device)
    results["device"] = args.device
    for name, value in results.items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
