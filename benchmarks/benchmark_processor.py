# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Speed of AVFMAEProcessor on CPU, and recall / speed of the face detector.

Scenarios (media are made at start-up from public-domain scikit-image pictures, see tests/media/synthetic.py):
  (a) a pre-cropped 160x160, 3 s, 25 fps H.264 clip with AAC audio, face crop off;
  (b) a 640x360, 3 s clip with face detection and alignment (MTCNN, default settings);
  (c) a folder of 75 face frames (256x256 JPEG, as OpenFace writes them) with a separate 16 kHz WAV file.

For each: clips/s in one process (1 thread), and with a torch DataLoader whose workers each run the processor on
whole batches (`--workers`, 1 thread each); the share of single-process time spent in decoding, face detection and
cropping, fbank (resampling + spectrogram) and frame transforms (resize + normalise). Then the detector's median
ms/frame on 640x360 scenes and its recall on real faces pasted at 40-200 px and +-20 degrees.

Usage: python benchmarks/benchmark_processor.py [--workers 2] [--batch-size 8] [--clips 320] [--json out.json]
"""

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date

import numpy as np
import torch


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import avfmae_hf  # noqa: E402
from avfmae_hf import (  # noqa: E402
    face_detection_avfmae,
    feature_extraction_avfmae,
    video_decoding_avfmae,
    video_processing_avfmae,  # noqa: E402
)
from tests.media import synthetic  # noqa: E402


STAGES = ("decode", "face", "fbank", "transforms")


class StageTimer:
    """Exclusive wall time per stage: a stage's time excludes the stages called inside it."""

    def __init__(self):
        self.totals = defaultdict(float)
        self.stack = []

    def wrap(self, owner, name, stage):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.stack.append([stage, 0.0])
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                _, inner = self.stack.pop()
                self.totals[stage] += elapsed - inner
                if self.stack:
                    self.stack[-1][1] += elapsed

        setattr(owner, name, timed)


def install_stage_timer() -> StageTimer:
    timer = StageTimer()
    timer.wrap(video_decoding_avfmae, "open_video", "decode")
    timer.wrap(video_processing_avfmae, "open_video", "decode")
    timer.wrap(video_decoding_avfmae.VideoSource, "read_frames", "decode")
    timer.wrap(video_decoding_avfmae.ContainerVideoSource, "read_audio", "decode")
    timer.wrap(feature_extraction_avfmae, "load_audio_file", "decode")
    timer.wrap(video_processing_avfmae, "crop_faces", "face")
    timer.wrap(feature_extraction_avfmae.AVFMAEFeatureExtractor, "prepare_waveform", "fbank")
    timer.wrap(feature_extraction_avfmae.AVFMAEFeatureExtractor, "compute_fbank", "fbank")
    timer.wrap(video_processing_avfmae.AVFMAEVideoProcessor, "transform_frames", "transforms")
    return timer


def make_media(directory: str) -> dict:
    audio = synthetic.speech_like_audio(3.0, 16000)
    cropped, _ = synthetic.talking_face_frames(num_frames=75, height=160, width=160, face_size=110)
    wide, _ = synthetic.talking_face_frames(num_frames=75, height=360, width=640, face_size=120)
    faces, _ = synthetic.talking_face_frames(num_frames=75, height=256, width=256, face_size=150)
    media = {
        "a": {"videos": synthetic.write_video(os.path.join(directory, "a.mp4"), cropped, 25, audio)},
        "b": {"videos": synthetic.write_video(os.path.join(directory, "b.mp4"), wide, 25, audio)},
    }
    folder = synthetic.write_frame_folder(os.path.join(directory, "c_frames"), faces)
    wav = os.path.join(directory, "c.wav")
    write_wav(wav, audio, 16000)
    media["c"] = {"videos": folder, "audio": wav}
    return media


def write_wav(path: str, samples: np.ndarray, sampling_rate: int) -> None:
    import av

    with av.open(path, mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=sampling_rate)
        stream.layout = "mono"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sampling_rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


SCENARIO_KWARGS = {"a": {"do_face_crop": False}, "b": {"do_face_crop": True}, "c": {}}
SCENARIO_NAMES = {
    "a": "(a) pre-cropped 160x160 3 s clip + audio",
    "b": "(b) 640x360 3 s clip, face detection + alignment",
    "c": "(c) folder of 75 face frames (256x256 JPEG) + WAV",
}


class BatchDataset(torch.utils.data.Dataset):
    """Item `i` is a whole processed batch, so that workers collate nothing and each clip is copied once."""

    def __init__(self, processor, media: dict, kwargs: dict, num_clips: int, batch_size: int):
        self.processor, self.media, self.kwargs = processor, media, kwargs
        self.num_batches, self.batch_size = num_clips // batch_size, batch_size

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        videos = [self.media["videos"]] * self.batch_size
        audio = [self.media["audio"]] * self.batch_size if "audio" in self.media else None
        return dict(self.processor(videos=videos, audio=audio, return_tensors="pt", **self.kwargs))


def single_thread_worker(_):
    # OpenCV's thread count is inherited from the main process, where it is set before anything runs: calling
    # cv2.setNumThreads in a forked child whose parent had started OpenCV's thread pool can deadlock.
    torch.set_num_threads(1)


def time_single_process(processor, media, kwargs, num_clips, timer) -> tuple[float, dict]:
    audio = media.get("audio")
    processor(videos=media["videos"], audio=audio, **kwargs)  # warm-up (detector, caches)
    timer.totals.clear()
    start = time.perf_counter()
    for _ in range(num_clips):
        processor(videos=media["videos"], audio=audio, return_tensors="pt", **kwargs)
    elapsed = time.perf_counter() - start
    shares = {stage: timer.totals[stage] / elapsed for stage in STAGES}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return num_clips / elapsed, shares


def time_data_loader(processor, media, kwargs, num_clips, batch_size, workers) -> float:
    dataset = BatchDataset(processor, media, kwargs, num_clips, batch_size)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        worker_init_fn=single_thread_worker,
        persistent_workers=True,
        prefetch_factor=2,
    )
    iterator = iter(loader)
    for _ in range(workers):  # warm-up: every worker builds its detector and fills its caches
        next(iterator)
    start = time.perf_counter()
    clips = 0
    for batch in iterator:
        clips += batch["pixel_values"].shape[0]
    elapsed = time.perf_counter() - start
    del iterator, loader
    return clips / elapsed


def detector_benchmark(num_lfw: int) -> dict:
    """Median ms per 640x360 frame and recall (a detection with IoU >= 0.4 with the pasted face) of the default
    MTCNN detector: the astronaut and the cameraman, and `num_lfw` upscaled LFW faces, pasted at 40-200 px and tilted
    by -20..20 degrees; plus detections on face-free frames."""
    detector = face_detection_avfmae.MTCNNFaceDetector()
    sizes, angles = (40, 60, 80, 120, 160, 200), (-20, -10, 0, 10, 20)
    scenes = synthetic.face_scenes(sizes=sizes, angles=angles, num_lfw=num_lfw)
    groups = {"real": scenes[: 2 * len(sizes) * len(angles)], "lfw": scenes[2 * len(sizes) * len(angles) :]}
    times, results = [], {}
    for name, group in groups.items():
        found = upright = upright_found = 0
        for scene in group:
            start = time.perf_counter()
            detections = detector.detect(scene.frame)
            times.append(time.perf_counter() - start)
            hit = any(face_detection_avfmae.box_iou(d.box, scene.face_box) >= 0.4 for d in detections)
            found += hit
            upright += scene.angle == 0
            upright_found += hit and scene.angle == 0
        results[name] = (found, len(group), upright_found, upright)
    negatives = [synthetic.background(kind=kind) for kind in range(4)]
    false_positives = sum(len(detector.detect(frame)) for frame in negatives)
    return {
        "ms_per_frame_median": 1000 * float(np.median(times)),
        "real_faces_found": results["real"],
        "lfw_upscaled_found": results["lfw"],
        "false_positives": (false_positives, len(negatives)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips", type=int, default=320, help="clips per DataLoader measurement")
    parser.add_argument("--single-clips", type=int, default=40, help="clips per single-process measurement")
    parser.add_argument("--scenarios", default="abc")
    parser.add_argument(
        "--backends", default="decord,pyav", help="video backends to measure for the encoded videos (a) and (b)"
    )
    parser.add_argument("--num-lfw", type=int, default=20, help="LFW faces in the detector benchmark")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    torch.set_num_threads(1)
    face_detection_avfmae.import_cv2().setNumThreads(1)
    results = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory() as directory:
        media = make_media(directory)
        timer = install_stage_timer()
        for key in args.scenarios:
            backends = [video_decoding_avfmae.default_video_backend()]
            if key in "ab":
                available = (
                    video_decoding_avfmae.VIDEO_BACKENDS if video_decoding_avfmae.is_decord_available() else ("pyav",)
                )
                backends = [backend for backend in args.backends.split(",") if backend in available]
            for backend in backends:
                processor = avfmae_hf.AVFMAEProcessor(avfmae_hf.AVFMAEVideoProcessor(video_backend=backend))
                kwargs = SCENARIO_KWARGS[key]
                single, shares = time_single_process(processor, media[key], kwargs, args.single_clips, timer)
                parallel = time_data_loader(processor, media[key], kwargs, args.clips, args.batch_size, args.workers)
                name = SCENARIO_NAMES[key] + (f", {backend}" if key in "ab" else "")
                results["scenarios"][f"{key}-{backend}"] = {
                    "name": name,
                    "clips_per_s_1_process": single,
                    "clips_per_s_data_loader": parallel,
                    "time_shares_1_process": shares,
                }
                print(
                    f"{name}: {single:.1f} clips/s in 1 process (1 thread), {parallel:.1f} clips/s with "
                    f"{args.workers} DataLoader workers x batch {args.batch_size}; time: "
                    + ", ".join(f"{stage} {share:.0%}" for stage, share in shares.items()),
                    flush=True,
                )
    results["detector"] = detector_benchmark(args.num_lfw)
    detector = results["detector"]
    real, lfw = detector["real_faces_found"], detector["lfw_upscaled_found"]
    print(
        f"MTCNN (1 thread): {detector['ms_per_frame_median']:.1f} ms per 640x360 frame (median); found "
        f"{real[0]}/{real[1]} real faces (upright {real[2]}/{real[3]}), {lfw[0]}/{lfw[1]} upscaled LFW faces "
        f"(upright {lfw[2]}/{lfw[3]}); detections on {detector['false_positives'][1]} face-free frames: "
        f"{detector['false_positives'][0]}"
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
