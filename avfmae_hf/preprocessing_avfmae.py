# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Preprocess a corpus once: face detection, alignment and smoothing over every frame of every clip, written as small
face-crop H.264 clips with 16 kHz mono FLAC audio, plus a table that `datasets` loads and the training datasets read.

Face detection costs ~14 ms a frame, far more than a training step allows per clip; doing it once here lets the
training data loader only decode small crops. The output folder holds:

- `clips/<hash>.mp4`: one clip per source, named by a stable hash of its video and audio paths, and `clips/<hash>.json`
  its row. Both are written under a temporary name and renamed when complete, so an interrupted run never leaves a
  file that is read as data, and a rerun (resume) only redoes the clips without a row.
- `table-<shard>-of-<num_shards>.jsonl`: the rows of one shard (columns `video` (relative path), `label`, `source`,
  `face_found`, `num_frames`, `fps`), written at the end of a shard from the rows on disk; `datasets.load_dataset(
  "json", data_files=f"{folder}/table-*.jsonl")` reads all shards.
- `preprocessing.json`: the format version, the processor settings used and the counts of each shard.
"""

import concurrent.futures
import fractions
import hashlib
import json
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers.utils import logging

from .data_avfmae import DECODE_ERRORS
from .errors_avfmae import AVFMAEInputError
from .face_detection_avfmae import crop_faces
from .video_decoding_avfmae import import_av, import_pil_image, open_video
from .video_processing_avfmae import frame_rate_of


logger = logging.get_logger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "preprocessing.json"
CLIPS_DIR = "clips"
TABLE_PATTERN = "table-*.jsonl"
PARTIAL_SUFFIX = ".partial"
AUDIO_SAMPLING_RATE = 16000
# A 3 s 160x160 clip of a talking face at this quality is ~0.05-0.2 MB, under the 0.3 MB per clip the corpus budget
# allows, and visually indistinguishable from the crop after the model's own resize and normalisation.
DEFAULT_CRF = 23
# Written for fast reading, since a clip is decoded every epoch: x264's "fastdecode" tuning (no CABAC, no deblocking)
# and B-frames that no other frame refers to (`b-pyramid=none`), which the reader skips when they are not sampled.
# Both cost a little size, not quality.
X264_OPTIONS = {"preset": "medium", "tune": "fastdecode", "x264-params": "b-pyramid=none"}
# Lossless audio: the 16-bit samples read back are the processor's 16 kHz waveform, so the spectrogram of a preprocessed
# clip is that of its source; FLAC decodes faster than AAC and a 3 s mono track is ~40 KB.
AUDIO_CODEC = "flac"
# Samples per FLAC frame: the largest of FLAC's streamable subset (FFmpeg picks 1152 at 16 kHz). A 3 s track is then 11
# frames instead of 42, and each frame costs the reader a fixed overhead (packet, decode call, conversion); the samples
# are the same.
AUDIO_FRAME_SIZE = 4608
# The video processor options that shape a preprocessed crop; a folder made with others gives other inputs.
CROP_SETTINGS = ("face_detector", "face_alignment", "face_crop_size", "smooth_face_track", "size", "resample")


class PreprocessingFormatError(ValueError):
    """A preprocessed folder that this version cannot read or extend (another format version or other settings)."""


@dataclass
class PreprocessingReport:
    """What [`preprocess_corpus`] did in one shard.

    Attributes:
        num_clips (`int`): the shard's clips; `num_written` were processed now, `num_reused` were on disk already.
        skipped (`list[tuple[str, str]]`): `(source video, why)` of every clip that could not be processed.
        table (`Path`): the shard's table.
    """

    num_clips: int
    num_written: int = 0
    num_reused: int = 0
    skipped: list = field(default_factory=list)
    table: Path | None = None


def clip_name(video: str, audio: str | None = None) -> str:
    """The stable file stem of a source clip: a hash of its video (and separate audio) path."""
    return hashlib.sha256(f"{video}\0{audio or ''}".encode()).hexdigest()[:20]


def crop_settings(processor) -> dict:
    """The processor settings that shape preprocessed clips (stored in, and checked against, the manifest)."""
    options = processor.video_processor.resolve_options()
    settings = {}
    for key in CROP_SETTINGS:
        value = options[key]
        settings[key] = value.to_dict() if hasattr(value, "to_dict") else value
    settings["resample"] = int(settings["resample"])
    settings["size"] = {key: value for key, value in dict(settings["size"]).items() if value is not None}
    return settings


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a preprocessed folder; [`PreprocessingFormatError`] when it was written by another format
    version."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PreprocessingFormatError(f"{path}: not a readable preprocessing manifest ({error}).") from error
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise PreprocessingFormatError(
            f"{folder}: preprocessed with format version {version!r}; this version reads format {FORMAT_VERSION}. "
            f"Preprocess the corpus again into a new folder."
        )
    return manifest


def is_preprocessed_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    partial.write_text(text)
    os.replace(partial, path)


def _model_size(settings: dict) -> tuple[int, int]:
    size = settings["size"]
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    side = int(size.get("shortest_edge") or settings["face_crop_size"])
    return side, side


def _encode(path: Path, frames: Sequence[np.ndarray], fps: float, waveform: np.ndarray | None, crf: int) -> None:
    """Write RGB frames and a mono 16 kHz waveform as H.264 + FLAC mp4 at `path`."""
    av = import_av()
    with av.open(os.fspath(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), **X264_OPTIONS}
        audio_stream = None
        if waveform is not None:
            audio_stream = container.add_stream(AUDIO_CODEC, rate=AUDIO_SAMPLING_RATE)
            audio_stream.layout = "mono"
            audio_stream.options = {"frame_size": str(AUDIO_FRAME_SIZE)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
        if audio_stream is not None:
            # 16-bit samples as the reader scales them back (by 2**15), so a sample read back differs from the
            # waveform by at most half a step
            samples = np.clip(np.round(np.asarray(waveform, dtype=np.float64) * 2.0**15), -(2**15), 2**15 - 1)
            samples = samples.astype(np.int16)
            for start in range(0, samples.shape[0], 4096):
                audio_frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[None, start : start + 4096]), format="s16", layout="mono"
                )
                audio_frame.sample_rate = AUDIO_SAMPLING_RATE
                audio_frame.pts = start
                audio_frame.time_base = fractions.Fraction(1, AUDIO_SAMPLING_RATE)
                container.mux(audio_stream.encode(audio_frame))
            container.mux(audio_stream.encode())


def preprocess_clip(entry, processor, clips_dir: Path, settings: dict, crf: int = DEFAULT_CRF) -> dict:
    """Face-crop every frame of one clip and write it (see the module docstring); returns its row."""
    name = clip_name(entry.video, entry.audio)
    source = open_video(entry.video, backend=processor.video_processor.video_backend)
    try:
        frames = source.read_frames(range(source.num_frames))
        fps = frame_rate_of(source)
        if entry.audio is not None:
            waveform = processor.feature_extractor.prepare_waveform(entry.audio, name=entry.audio)
        elif source.has_audio:
            audio, sampling_rate = source.read_audio()
            waveform = processor.feature_extractor.prepare_waveform(audio, sampling_rate, name=entry.video)
        else:
            logger.warning(
                f"{entry.video}: the video has no audio stream; its preprocessed clip has none either (an "
                f"audio-visual model cannot train on it; give the clip's audio file in the list)."
            )
            waveform = None
    finally:
        source.close()
    result = crop_faces(
        frames,
        processor.video_processor.get_face_detector(settings["face_detector"]),
        size=settings["face_crop_size"],
        use_landmarks=settings["face_alignment"] == "landmarks",
        smooth=settings["smooth_face_track"],
    )
    height, width = _model_size(settings)
    image = import_pil_image()
    # the resize the video processor does to a live crop, so that a preprocessed clip gives the same model input
    crops = [
        np.asarray(image.fromarray(crop).resize((width, height), image.Resampling(settings["resample"])))
        for crop in result.crops
    ]
    video_path = clips_dir / f"{name}.mp4"
    partial = video_path.with_name(video_path.name + PARTIAL_SUFFIX)
    _encode(partial, crops, fps, None if waveform is None else np.asarray(waveform, dtype=np.float32), crf)
    os.replace(partial, video_path)
    label = entry.label
    row = {
        "video": f"{CLIPS_DIR}/{name}.mp4",
        "label": list(label) if isinstance(label, tuple) else label,
        "source": entry.video,
        "face_found": result.face_found,
        "num_frames": len(crops),
        "fps": fps,
    }
    _write_atomically(clips_dir / f"{name}.json", json.dumps(row))
    return row


_WORKER_STATE = {}


def _init_worker(processor, clips_dir: Path, settings: dict, crf: int) -> None:
    _WORKER_STATE.update(processor=processor, clips_dir=clips_dir, settings=settings, crf=crf)


def _run_clip(entry) -> tuple:
    """`(entry, row, None)`, or `(entry, None, why)` for a clip that cannot be read."""
    try:
        row = preprocess_clip(entry, **_WORKER_STATE)
    except (*DECODE_ERRORS, AVFMAEInputError, ValueError, RuntimeError) as error:
        return entry, None, f"{type(error).__name__}: {error}"
    return entry, row, None


def _existing_row(clips_dir: Path, entry) -> dict | None:
    name = clip_name(entry.video, entry.audio)
    row_path, video_path = clips_dir / f"{name}.json", clips_dir / f"{name}.mp4"
    if row_path.is_file() and video_path.is_file():
        return json.loads(row_path.read_text())
    return None


def _start_manifest(output_dir: Path, settings: dict) -> dict:
    if (output_dir / MANIFEST_FILE).exists():
        manifest = read_manifest(output_dir)
        if manifest.get("settings") != settings:
            raise PreprocessingFormatError(
                f"{output_dir}: preprocessed with settings {manifest.get('settings')}, not {settings}; use a new "
                f"output folder for other settings."
            )
        return manifest
    manifest = {"format_version": FORMAT_VERSION, "settings": settings, "shards": {}}
    _write_atomically(output_dir / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return manifest


def _check_shard_counts(folder: Path, tables: Sequence[Path], num_shards: int | None = None) -> int:
    """The shard count of a folder's tables; an error when they were written with different counts (their rows
    would overlap)."""
    counts = {int(table.stem.rsplit("-", 1)[1]) for table in tables} | ({num_shards} if num_shards else set())
    if len(counts) > 1:
        raise PreprocessingFormatError(
            f"{folder}: tables of runs split into {sorted(counts)} shards; use one shard count per folder (delete the "
            f"table-*.jsonl files of the other count to rebuild them from the clips on disk)."
        )
    return counts.pop()


def preprocess_corpus(
    entries: Sequence,
    output_dir: str | os.PathLike,
    *,
    processor,
    num_workers: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    crf: int = DEFAULT_CRF,
    show_progress: bool = True,
) -> PreprocessingReport:
    """Face-crop a corpus once (see the module docstring) into `output_dir`.

    Args:
        entries: the clips ([`~training_avfmae.ListEntry`], e.g. from [`~training_avfmae.read_list_file`]).
        output_dir: the output folder; a folder of an earlier (interrupted) run with the same settings is resumed.
        processor ([`AVFMAEProcessor`]): its video processor's face detector, alignment, smoothing, crop size and
            output `size` make the crops (stored at the model's frame size); its feature extractor's sampling rate
            must be 16 kHz.
        num_workers (`int`, defaults to 0): worker processes (spawned); 0 processes the clips in this process.
        num_shards, shard_index (`int`): this run processes entries `shard_index, shard_index + num_shards, ...`, so
            that several machines can share a corpus; each shard writes its own table.
        crf (`int`, defaults to 23): H.264 quality (lower is better and larger).

    Returns:
        [`PreprocessingReport`]; clips that cannot be read are skipped, each logged with its reason.
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}.")
    if processor.feature_extractor.sampling_rate != AUDIO_SAMPLING_RATE:
        raise ValueError(
            f"Preprocessed audio is {AUDIO_SAMPLING_RATE} Hz; the feature extractor expects another rate."
        )
    output_dir = Path(output_dir)
    clips_dir = output_dir / CLIPS_DIR
    clips_dir.mkdir(parents=True, exist_ok=True)
    settings = crop_settings(processor)
    _start_manifest(output_dir, settings)
    _check_shard_counts(output_dir, list(output_dir.glob(TABLE_PATTERN)), num_shards)
    shard = list(entries)[shard_index::num_shards]
    report = PreprocessingReport(num_clips=len(shard))
    rows, todo = {}, []
    for entry in shard:
        row = _existing_row(clips_dir, entry)
        if row is None:
            todo.append(entry)
        else:
            rows[entry.video, entry.audio] = row
    report.num_reused = len(rows)
    progress = tqdm(total=len(todo), desc=f"preprocess shard {shard_index}/{num_shards}", disable=not show_progress)
    state = (processor, clips_dir, settings, crf)
    if num_workers > 0 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            num_workers, mp_context=context, initializer=_init_worker, initargs=state
        ) as executor:
            results = [executor.submit(_run_clip, entry) for entry in todo]
            outcomes = (future.result() for future in concurrent.futures.as_completed(results))
            _collect(outcomes, rows, report, progress)
    else:
        _init_worker(*state)
        _collect((_run_clip(entry) for entry in todo), rows, report, progress)
    progress.close()
    ordered = [rows[entry.video, entry.audio] for entry in shard if (entry.video, entry.audio) in rows]
    report.table = output_dir / f"table-{shard_index:05d}-of-{num_shards:05d}.jsonl"
    _write_atomically(report.table, "".join(json.dumps(row) + "\n" for row in ordered))
    manifest = read_manifest(output_dir)
    manifest["shards"][f"{shard_index}-of-{num_shards}"] = {
        "num_clips": report.num_clips,
        "num_preprocessed": len(ordered),
        "num_skipped": len(report.skipped),
        "skipped": [{"source": video, "reason": reason} for video, reason in report.skipped],
    }
    _write_atomically(output_dir / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return report


def _collect(outcomes, rows: dict, report: PreprocessingReport, progress) -> None:
    for entry, row, reason in outcomes:
        if row is None:
            logger.warning(f"{entry.place or entry.video}: skipped, {reason}")
            report.skipped.append((entry.video, reason))
        else:
            rows[entry.video, entry.audio] = row
            report.num_written += 1
        progress.update()


def read_preprocessed_folder(folder: str | os.PathLike) -> list:
    """The clips of a preprocessed folder (every shard's table) as [`~training_avfmae.ListEntry`] items marked
    `face_cropped` (the training datasets then do not detect faces again). Raises [`PreprocessingFormatError`] for a
    folder of another format version and `FileNotFoundError` when a listed clip is missing."""
    from .training_avfmae import ListEntry

    folder = Path(folder)
    read_manifest(folder)
    tables = sorted(folder.glob(TABLE_PATTERN))
    if not tables:
        raise FileNotFoundError(f"{folder}: no {TABLE_PATTERN} table; the preprocessing has not finished a shard.")
    num_shards = _check_shard_counts(folder, tables)
    missing = sorted(set(range(num_shards)) - {int(table.name.split("-")[1]) for table in tables})
    if missing:
        logger.warning(f"{folder}: shards {missing} of {num_shards} have not finished; their clips are left out.")
    entries = []
    for table in tables:
        for number, line in enumerate(table.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            video = folder / row["video"]
            if not video.is_file():
                raise FileNotFoundError(f"{table}:{number}: clip {video} is missing.")
            label = row["label"]
            entries.append(
                ListEntry(
                    os.fspath(video),
                    None,
                    tuple(label) if isinstance(label, list) else label,
                    place=f"{table}:{number}, preprocessed from {row['source']}",
                    face_cropped=True,
                )
            )
    return entries


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "PreprocessingFormatError",
    "PreprocessingReport",
    "clip_name",
    "crop_settings",
    "is_preprocessed_folder",
    "preprocess_clip",
    "preprocess_corpus",
    "read_manifest",
    "read_preprocessed_folder",
]
