# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Inference on whole videos: emotions over time, audio-visual features and the offline demo.

A video longer than the model's window (16 frames, stride 4: 64 source frames, 2.56 s at 25 fps) is cut into
sliding windows of the official geometry (`AVFMAEProcessor(..., sampling_mode="sliding")`); the model scores every
window, and a video's score is the mean of its windows' probabilities. Videos are decoded and processed in
`torch.utils.data.DataLoader` worker processes (`num_workers`) while the model runs, and windows of several videos
share a forward pass (`batch_size` windows).
"""

import copy
import csv
import functools
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoConfig
from transformers.utils import logging

from .configuration_avfmae import AVFMAEConfig
from .errors_avfmae import AVFMAEInputError, describe_item, items_numbered_from
from .modeling_avfmae import AVFMAEForVideoClassification, AVFMAEModel
from .pipeline_avfmae import probabilities
from .processing_avfmae import AVFMAEProcessor
from .visualization_avfmae import require_matplotlib


logger = logging.get_logger(__name__)

SAMPLE_VIDEO = "sample_talking_face.mp4"
DEFAULT_SAMPLING_MODE = "sliding"
# Windows per forward pass, across videos.
DEFAULT_BATCH_SIZE = 8
# The official datasets keep a clip's audio beside its frame folder: `clips/0001/` and `clips/0001.wav`.
COMPANION_AUDIO_SUFFIX = ".wav"


def sample_video_path() -> Path:
    """The short public-domain talking-face clip shipped with the package (a NASA portrait and synthetic speech)."""
    return Path(str(resources.files(__package__) / "data" / SAMPLE_VIDEO))


# --------------------------------------------------------------------------------------------------------------------
# Loading models
# --------------------------------------------------------------------------------------------------------------------


class ModelFolderError(ValueError):
    """A `--model` that is not a usable AVF-MAE++ folder for the task: absent, of another model type, or without the
    head the task needs."""


def _looks_like_hub_id(name: str) -> bool:
    if name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)) or os.sep != "/" and os.sep in name:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def load_model_config(model_name_or_path: str | os.PathLike) -> AVFMAEConfig:
    """The config of a converted or saved AVF-MAE++ folder (or Hub model), with clear errors for a folder that does
    not exist, a file, and a folder of another model."""
    name = os.fspath(model_name_or_path)
    path = Path(name).expanduser()
    if path.is_file():
        raise ModelFolderError(f"{name} is a file; pass the folder that holds config.json and the weights.")
    if not path.exists() and not _looks_like_hub_id(name):
        raise ModelFolderError(f"no such folder: {name}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelFolderError(f"{name} is not a model folder: it has no config.json.")
    try:
        config = AutoConfig.from_pretrained(path if path.exists() else name)
    except OSError as error:
        if path.exists():
            raise ModelFolderError(f"{name} is not a model folder (its config.json cannot be read).") from error
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFolderError(
            f"no such folder: {name} (nor a Hub model that could be loaded under that name: {reason})"
        ) from error
    except ValueError as error:  # a model_type transformers does not know
        raise ModelFolderError(
            f"{name} does not hold an AVF-MAE++ model: its config.json names no model type transformers knows."
        ) from error
    if not isinstance(config, AVFMAEConfig):
        raise ModelFolderError(
            f"{name} holds a {config.model_type!r} model, not AVF-MAE++ ({AVFMAEConfig.model_type!r})."
        )
    return config


def load_classifier(
    model_name_or_path: str | os.PathLike | None = None,
    size: str = "base",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[AVFMAEForVideoClassification, AVFMAEProcessor, bool]:
    """A classification model and its processor from a converted or fine-tuned model folder, or, without one, a
    freshly initialised model of size `size` (nothing is downloaded). Returns `(model, processor, pretrained)`.

    Raises [`ModelFolderError`] for a folder without a trained classification head (a pretraining or backbone
    folder): its predictions would come from random weights."""
    if model_name_or_path is None:
        model = AVFMAEForVideoClassification(AVFMAEConfig.from_size(size))
        return _place(model, device, dtype), AVFMAEProcessor.for_model_config(model.config), False
    config = load_model_config(model_name_or_path)
    architectures = config.architectures or []
    if AVFMAEForVideoClassification.__name__ not in architectures:
        kind = ", ".join(architectures) or "a model"
        raise ModelFolderError(
            f"{os.fspath(model_name_or_path)} holds {kind} without a trained classification head: predictions need a "
            "fine-tuned classifier (convert a fine-tuning checkpoint, or fine-tune this one); extract-features works "
            "with it."
        )
    model = AVFMAEForVideoClassification.from_pretrained(model_name_or_path, config=config)
    return _place(model, device, dtype), load_processor(model_name_or_path, config), True


def load_backbone(
    model_name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[AVFMAEModel, AVFMAEProcessor]:
    """The encoders and fusion module of any converted or saved folder (pretraining or classification), with its
    processor. A pretraining folder has no learned layer weights (pretraining does not use them): they are set to
    equal weights, `1 / num_layers` each, the start of fine-tuning, so its features average the encoder layers."""
    config = load_model_config(model_name_or_path)
    # transformers' loading report would list every decoder or head weight the backbone leaves out (a hundred lines
    # for a pretraining folder); only what is not expected of a backbone is reported, in one line
    loading_logger = logging.get_logger("transformers.modeling_utils")
    loading_logger.addFilter(_without_loading_report)  # (a level would change what transformers checks)
    try:
        model, info = AVFMAEModel.from_pretrained(model_name_or_path, config=config, output_loading_info=True)
    finally:
        loading_logger.removeFilter(_without_loading_report)
    unexpected = sorted(key for key in info["unexpected_keys"] if not key.startswith(NOT_IN_THE_BACKBONE))
    missing = sorted(key for key in info["missing_keys"] if key not in ("video_layer_weights", "audio_layer_weights"))
    if unexpected or missing or info["mismatched_keys"]:
        logger.warning(
            f"{model_name_or_path}: weights not in the checkpoint (newly initialised): {missing or 'none'}; "
            f"checkpoint weights the backbone does not use: {unexpected or 'none'}; shape mismatches: "
            f"{sorted(info['mismatched_keys']) or 'none'}."
        )
    return _place(model, device, dtype), load_processor(model_name_or_path, config)


def _without_loading_report(record) -> bool:
    return "LOAD REPORT" not in record.getMessage()


# Parts of pretraining and classification checkpoints that are not the backbone's.
NOT_IN_THE_BACKBONE = ("video_decoder.", "audio_decoder.", "fc_norm.", "classifier.")


def _place(model, device, dtype):
    model = model.eval()
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    if model.dtype == torch.bfloat16 and model.device.type == "cpu" and cpu_has_native_bf16() is False:
        logger.warning(
            "This CPU has no bf16 units (AVX512-BF16 or AMX): bf16 weights run emulated, slower than float32 here."
        )
    return model


@functools.cache
def cpu_has_native_bf16() -> bool | None:
    """Whether this x86 Linux CPU computes bf16 matrix products natively (AVX512-BF16 or AMX-BF16 flags); `None`
    where that cannot be told from `/proc/cpuinfo` (other systems and architectures)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags_line = next((line for line in cpuinfo if line.startswith("flags")), None)
    except OSError:
        return None
    if flags_line is None:
        return None
    flags = set(flags_line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def load_processor(model_name_or_path: str | os.PathLike, config: AVFMAEConfig) -> AVFMAEProcessor:
    """The processor saved with a model, or the config's default when the folder has none."""
    try:
        return AVFMAEProcessor.from_pretrained(model_name_or_path)
    except OSError:
        logger.warning(f"{model_name_or_path} has no processor configuration; using the model's default processor.")
        return AVFMAEProcessor.for_model_config(config)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`"auto"` (or `None`): the first CUDA device when there is one, else the CPU; any other value as `torch.device`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------------------------------
# Processing videos in worker processes
# --------------------------------------------------------------------------------------------------------------------


def video_name(video: object, index: int) -> str:
    """How a video is named in results: its path, or `video <index>` for in-memory inputs."""
    return os.fspath(video) if isinstance(video, (str, os.PathLike)) else f"video {index}"


def companion_audio(video: object) -> Path | None:
    """The `.wav` file beside a frame folder (`clips/0001/` -> `clips/0001.wav`), as the official datasets keep it."""
    if not isinstance(video, (str, os.PathLike)) or not os.path.isdir(video):
        return None
    candidate = Path(os.fspath(video).rstrip("/\\") + COMPANION_AUDIO_SUFFIX)
    return candidate if candidate.is_file() else None


@dataclass
class ProcessedVideo:
    """The processor's output for one video (every window), or the error that stopped it."""

    index: int
    name: str
    inputs: dict[str, torch.Tensor] | None = None
    error: Exception | None = None
    processing_s: float = 0.0
    # the formatted traceback of an error that is not an input error (a decoder or library failure)
    traceback: str | None = None

    @property
    def num_windows(self) -> int:
        return 0 if self.inputs is None else int(self.inputs["pixel_values"].shape[0])


def _renamed_error(error: Exception, index: int, video: object) -> Exception:
    """The error of a video processed on its own, naming its position in the caller's list instead of 0."""
    if isinstance(error, AVFMAEInputError):
        renamed = type(error)(error.problem, index, video)
    else:
        renamed = type(error)(f"{describe_item(index, video)}: {error}")
    renamed.__cause__ = error.__cause__
    return renamed


class VideoWindowsDataset(torch.utils.data.Dataset):
    """One item per video: the processor's windows of it as a [`ProcessedVideo`]. Input errors are caught and
    returned (one bad file does not stop a `DataLoader` over the others).

    Args:
        videos: anything [`AVFMAEProcessor`] takes as one video (paths, frame folders, bytes, frame arrays).
        processor ([`AVFMAEProcessor`]): run on each video.
        audios (*optional*): one audio item (or `None`) per video; `None` uses the video's own audio stream, or the
            `.wav` beside a frame folder ([`companion_audio`]).
        processor_kwargs: passed to every processor call (`sampling_mode`, `window_hop`, ...); `missing_audio`
            (`"error"` or `"silence"`) overrides the processor's setting.
    """

    def __init__(
        self, videos: Sequence, processor: AVFMAEProcessor, audios: Sequence | None = None, **processor_kwargs
    ):
        self.videos = list(videos)
        if audios is not None and len(audios) != len(self.videos):
            raise ValueError(f"Got {len(audios)} audio items for {len(self.videos)} videos; pass one per video.")
        self.audios = list(audios) if audios is not None else [None] * len(self.videos)
        missing_audio = processor_kwargs.pop("missing_audio", None)
        if missing_audio is not None and missing_audio != processor.missing_audio:
            # a setting of the processor, not of its call; the caller's processor is left as it is
            processor = copy.copy(processor)
            processor.missing_audio = missing_audio
        self.processor = processor
        self.processor_kwargs = processor_kwargs

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> ProcessedVideo:
        video = self.videos[index]
        audio = self.audios[index] if self.audios[index] is not None else companion_audio(video)
        began = time.perf_counter()
        try:
            with items_numbered_from(index):
                inputs = self.processor(
                    videos=[video],
                    audio=None if audio is None else [audio],
                    return_tensors="pt",
                    **self.processor_kwargs,
                )
        except (ValueError, OSError) as error:
            return ProcessedVideo(index, video_name(video, index), error=_renamed_error(error, index, video))
        except Exception as error:  # noqa: BLE001 - one video's failure must not stop the others
            unexpected = RuntimeError(f"{describe_item(index, video)}: unexpected {type(error).__name__}: {error}")
            return ProcessedVideo(index, video_name(video, index), error=unexpected, traceback=traceback.format_exc())
        return ProcessedVideo(
            index, video_name(video, index), inputs=dict(inputs), processing_s=time.perf_counter() - began
        )


def _as_is(item):
    return item


@dataclass
class WindowOutputs:
    """Per-window outputs of the model for one video, in window order (float32, on the CPU)."""

    video: ProcessedVideo
    outputs: dict[str, torch.Tensor]
    model_s: float


def _progress(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def iter_window_outputs(
    videos: Sequence,
    forward: Callable[[torch.Tensor, torch.Tensor | None], dict[str, torch.Tensor]],
    processor: AVFMAEProcessor,
    *,
    audios: Sequence | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool | None = False,
    **processor_kwargs,
) -> Iterator[WindowOutputs | ProcessedVideo]:
    """Runs `forward(pixel_values, audio_values)` over the windows of every video, `batch_size` windows at a time
    across videos, while `num_workers` processes decode and process the next videos. Yields, in input order and as
    soon as each is complete, a [`WindowOutputs`] per video, or the [`ProcessedVideo`] holding its error."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if num_workers < 0:
        raise ValueError(f"num_workers must be 0 or more, got {num_workers}.")
    dataset = VideoWindowsDataset(videos, processor, audios, **processor_kwargs)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_as_is,
        pin_memory=torch.device(device).type == "cuda",
    )
    files_bar = _progress(
        total=len(dataset), desc="videos", unit="video", disable=None if progress is None else not progress
    )
    windows_bar = _progress(total=0, desc="windows", unit="window", disable=None if progress is None else not progress)
    # videos in input order, each with the outputs of its windows that have run so far
    waiting: deque[list] = deque()
    # (entry, first window, end window) slices not yet run
    queued: deque[tuple[list, int, int]] = deque()
    queued_windows = 0

    def run_batch(limit: int) -> None:
        nonlocal queued_windows
        taken, count = [], 0
        while queued and count < limit:
            entry, start, stop = queued.popleft()
            take = min(stop - start, limit - count)
            taken.append((entry, start, start + take))
            if start + take < stop:
                queued.appendleft((entry, start + take, stop))
            count += take
        queued_windows -= count
        pixel_values = torch.cat([entry[0].inputs["pixel_values"][start:stop] for entry, start, stop in taken])
        audio = [entry[0].inputs.get("audio_values") for entry, _, _ in taken]
        audio_values = None
        if all(value is not None for value in audio):
            audio_values = torch.cat([value[start:stop] for value, (_, start, stop) in zip(audio, taken, strict=True)])
        began = time.perf_counter()
        with torch.inference_mode():
            outputs = forward(
                pixel_values.to(device, non_blocking=True),
                None if audio_values is None else audio_values.to(device, non_blocking=True),
            )
        outputs = {name: value.float().cpu() for name, value in outputs.items()}
        elapsed = time.perf_counter() - began
        offset = 0
        for entry, start, stop in taken:
            entry[1].append({name: value[offset : offset + stop - start] for name, value in outputs.items()})
            entry[2] -= stop - start
            entry[3] += elapsed * (stop - start) / count
            offset += stop - start
        windows_bar.update(count)

    def completed() -> Iterator[WindowOutputs | ProcessedVideo]:
        while waiting and waiting[0][2] == 0:
            video, chunks, _, model_s = waiting.popleft()
            files_bar.update(1)
            if video.error is not None:
                yield video
            else:
                outputs = {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
                yield WindowOutputs(video, outputs, model_s)

    try:
        for video in loader:
            entry = [video, [], video.num_windows, 0.0]
            waiting.append(entry)
            if video.error is None:
                queued.append((entry, 0, video.num_windows))
                queued_windows += video.num_windows
                windows_bar.total += video.num_windows
                windows_bar.refresh()
            while queued_windows >= batch_size:
                run_batch(batch_size)
            yield from completed()
        while queued_windows:
            run_batch(batch_size)
        yield from completed()
    finally:
        windows_bar.close()
        files_bar.close()


# --------------------------------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class WindowPrediction:
    """The scores of one window; `start` and `end` in seconds of the source video (`None` outside the sliding
    mode, where the processor reports no span)."""

    start: float | None
    end: float | None
    scores: dict[str, float]


@dataclass
class VideoPrediction:
    """What the model says about one video: per-label `scores` (the mean of the windows' probabilities), every
    window's scores, the pooled feature (mean over windows) and whether a face was found in every window."""

    video: str
    scores: dict[str, float]
    features: np.ndarray
    windows: list[WindowPrediction] = field(default_factory=list)
    window_features: np.ndarray | None = None
    face_found: bool | None = None
    padded: bool = False
    index: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda item: item[1], reverse=True)[:k]

    def to_record(self) -> dict:
        """The JSON form: `{"video", "scores", "windows": [{"start", "end", "scores"}], "face_found"}` (and
        `"padded": true` for a video shorter than one window)."""
        record = {
            "video": self.video,
            "scores": self.scores,
            "windows": [{"start": w.start, "end": w.end, "scores": w.scores} for w in self.windows],
            "face_found": self.face_found,
        }
        if self.padded:
            record["padded"] = True
        return record


class VideoFailure(Exception):
    """A video that could not be processed: its position in the input, its name, the typed error and, for an error
    that is not an input error, the traceback text."""

    def __init__(self, index: int, video: str, error: Exception, traceback: str | None = None):
        self.index = index
        self.video = video
        self.error = error
        self.traceback = traceback
        super().__init__(str(error))


def _window_spans(inputs: dict, num_windows: int) -> list[tuple[float | None, float | None]]:
    if "window_start" not in inputs:
        return [(None, None)] * num_windows
    # to the millisecond: the processor's float32 seconds would show as 2.559999942779541 in JSON and CSV files
    starts, ends = ([round(time, 3) for time in inputs[key].tolist()] for key in ("window_start", "window_end"))
    return list(zip(starts, ends, strict=True))


def _face_found(inputs: dict) -> bool | None:
    found = inputs.get("face_found")
    return None if found is None else bool(found.all())


def _classifier_forward(model: AVFMAEForVideoClassification):
    def forward(pixel_values, audio_values):
        outputs = model(pixel_values=pixel_values, audio_values=audio_values)
        return {"scores": probabilities(model.config, outputs.logits), "features": outputs.pooler_output}

    return forward


def iter_predictions(
    videos: Sequence,
    model: AVFMAEForVideoClassification,
    processor: AVFMAEProcessor,
    *,
    audios: Sequence | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = 0,
    sampling_mode: str = DEFAULT_SAMPLING_MODE,
    window_hop: int | None = None,
    progress: bool | None = False,
    **processor_kwargs,
) -> Iterator[VideoPrediction | VideoFailure]:
    """Predictions for `videos`, yielded in order as each video completes; a video that cannot be processed yields a
    [`VideoFailure`] (not raised) and the others go on. See [`predict_videos`] for the arguments."""
    if sampling_mode == "sliding" and window_hop is not None:
        processor_kwargs["window_hop"] = window_hop
    labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    for result in iter_window_outputs(
        videos,
        _classifier_forward(model),
        processor,
        audios=audios,
        batch_size=batch_size,
        num_workers=num_workers,
        device=model.device,
        progress=progress,
        sampling_mode=sampling_mode,
        **processor_kwargs,
    ):
        if isinstance(result, ProcessedVideo):
            yield VideoFailure(result.index, result.name, result.error, result.traceback)
        else:
            yield _video_prediction(result, labels)


def _video_prediction(result: WindowOutputs, labels: list[str]) -> VideoPrediction:
    inputs, scores = result.video.inputs, result.outputs["scores"]
    windows = [
        WindowPrediction(start, end, dict(zip(labels, row, strict=True)))
        for (start, end), row in zip(_window_spans(inputs, len(scores)), scores.tolist(), strict=True)
    ]
    padded = inputs.get("window_padded")
    return VideoPrediction(
        video=result.video.name,
        scores=dict(zip(labels, scores.mean(dim=0).tolist(), strict=True)),
        features=result.outputs["features"].mean(dim=0).numpy(),
        windows=windows,
        window_features=result.outputs["features"].numpy(),
        face_found=_face_found(inputs),
        padded=bool(padded.any()) if padded is not None else False,
        index=result.video.index,
        timings={"processing_s": result.video.processing_s, "model_s": result.model_s},
    )


def predict_videos(
    videos: Sequence,
    model: AVFMAEForVideoClassification,
    processor: AVFMAEProcessor,
    *,
    audios: Sequence | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = 0,
    sampling_mode: str = DEFAULT_SAMPLING_MODE,
    window_hop: int | None = None,
    progress: bool | None = False,
    **processor_kwargs,
) -> list[VideoPrediction]:
    """Emotion predictions for `videos` (paths, frame folders, bytes or frame arrays), one [`VideoPrediction`] each.

    Every video is cut into windows of the official geometry (`sampling_mode="sliding"`, a new window every
    `window_hop` source frames, the processor's default when `None`); `batch_size` windows (across videos) go
    through the model at once, while `num_workers` worker processes decode the next videos. The first video that
    cannot be processed raises its typed error (naming its position in `videos`); [`iter_predictions`] reports
    failures and goes on instead.
    """
    predictions = []
    for result in iter_predictions(
        videos,
        model,
        processor,
        audios=audios,
        batch_size=batch_size,
        num_workers=num_workers,
        sampling_mode=sampling_mode,
        window_hop=window_hop,
        progress=progress,
        **processor_kwargs,
    ):
        if isinstance(result, VideoFailure):
            raise result.error
        predictions.append(result)
    return predictions


@dataclass
class VideoFeatures:
    """Pooled features of one video: `features` (mean over windows) and `window_features`, one row per window."""

    video: str
    features: torch.Tensor
    window_features: torch.Tensor
    window_start: torch.Tensor
    window_end: torch.Tensor
    index: int = 0


def iter_features(
    videos: Sequence,
    model: AVFMAEModel,
    processor: AVFMAEProcessor,
    *,
    audios: Sequence | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = 0,
    sampling_mode: str = DEFAULT_SAMPLING_MODE,
    window_hop: int | None = None,
    progress: bool | None = False,
    **processor_kwargs,
) -> Iterator[VideoFeatures | VideoFailure]:
    """Pooled audio-visual features (AVFMAEModel's `pooler_output`: the concatenated means of the fused video and
    audio tokens, `2 * hidden_size` values; `hidden_size` for a video-only model) of every window of every video,
    yielded in order as each video completes (a [`VideoFailure`] for a video that cannot be processed)."""
    if sampling_mode == "sliding" and window_hop is not None:
        processor_kwargs["window_hop"] = window_hop

    def forward(pixel_values, audio_values):
        return {"features": model(pixel_values=pixel_values, audio_values=audio_values).pooler_output}

    for result in iter_window_outputs(
        videos,
        forward,
        processor,
        audios=audios,
        batch_size=batch_size,
        num_workers=num_workers,
        device=model.device,
        progress=progress,
        sampling_mode=sampling_mode,
        **processor_kwargs,
    ):
        if isinstance(result, ProcessedVideo):
            yield VideoFailure(result.index, result.name, result.error, result.traceback)
            continue
        window_features = result.outputs["features"]
        spans = _window_spans(result.video.inputs, len(window_features))
        yield VideoFeatures(
            video=result.video.name,
            features=window_features.mean(dim=0),
            window_features=window_features,
            window_start=torch.tensor([float("nan") if start is None else start for start, _ in spans]),
            window_end=torch.tensor([float("nan") if end is None else end for _, end in spans]),
            index=result.video.index,
        )


def extract_features(
    videos: Sequence,
    model: AVFMAEModel,
    processor: AVFMAEProcessor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    **kwargs,
) -> torch.Tensor:
    """Pooled audio-visual features `(num_videos, 2 * hidden_size)` (`(num_videos, hidden_size)` for a video-only
    model), each the mean of the video's window features; raises the typed error of the first video that cannot be
    processed. [`iter_features`] also gives the per-window features."""
    rows = []
    for result in iter_features(videos, model, processor, batch_size=batch_size, **kwargs):
        if isinstance(result, VideoFailure):
            raise result.error
        rows.append(result.features)
    return torch.stack(rows)


# --------------------------------------------------------------------------------------------------------------------
# Writing results
# --------------------------------------------------------------------------------------------------------------------


def write_predictions_csv(predictions: Iterable[VideoPrediction], path: str | os.PathLike, labels: list[str]) -> None:
    """One row per video (`window` = `all`, the mean over its windows) followed by one row per window."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "window", "start", "end", *labels, "face_found"])
        for prediction in predictions:
            first = prediction.windows[0].start if prediction.windows else None
            last = prediction.windows[-1].end if prediction.windows else None
            writer.writerow(
                [prediction.video, "all", first, last, *(prediction.scores[label] for label in labels),
                 prediction.face_found]
            )  # fmt: skip
            for number, window in enumerate(prediction.windows):
                writer.writerow(
                    [prediction.video, number, window.start, window.end, *(window.scores[label] for label in labels),
                     prediction.face_found]
                )  # fmt: skip


def import_pyplot():
    """matplotlib's pyplot on a file-only backend (the notebook backend inside a notebook), or the `ImportError` of
    [`~visualization_avfmae.require_matplotlib`] that says how to install it."""
    require_matplotlib()
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_emotions_over_time(prediction: VideoPrediction, path: str | os.PathLike | None = None, ax=None):
    """Draws the probability of every label against time, one point per window at the centre of its span (a
    shaded band marks each window's span). Saves a PNG at `path` when given; returns the figure."""
    plt = import_pyplot()
    figure = None
    if ax is None:
        figure, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    labels = list(prediction.scores)
    spans = [(w.start, w.end) for w in prediction.windows]
    if any(start is None for start, _ in spans):
        times = np.arange(len(spans), dtype=float)
        ax.set_xlabel("window")
    else:
        times = np.array([(start + end) / 2 for start, end in spans])
        ax.set_xlabel("time (s), centre of each window")
        ax.axvspan(spans[0][0], spans[0][1], color="0.9", zorder=0, label="first window's span")
    for label in labels:
        ax.plot(times, [w.scores[label] for w in prediction.windows], marker="o", markersize=3, label=label)
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    note = " (shorter than one window: padded)" if prediction.padded else ""
    ax.set_title(f"{Path(prediction.video).name}: emotions over time{note}")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    figure = figure or ax.figure
    if path is not None:
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return figure


def plot_file_name(prediction: VideoPrediction) -> str:
    """`<index>_<video name>.png`: the index keeps files of same-named videos in different folders apart."""
    stem = Path(prediction.video).name or "video"
    return f"{prediction.index:03d}_{stem}.png"


# --------------------------------------------------------------------------------------------------------------------
# Demo
# --------------------------------------------------------------------------------------------------------------------


def save_clip_preview(
    pixel_values: torch.Tensor,
    path: str | os.PathLike,
    image_mean,
    image_std,
    frame_times: Sequence[float] | None = None,
) -> None:
    """Saves the frames of one clip `(T, 3, H, W)` (normalised) as a grid, each with its time in the video below it
    when `frame_times` (seconds) are given."""
    plt = import_pyplot()
    mean = torch.tensor(image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_std).view(1, 3, 1, 1)
    frames = (pixel_values.float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    columns = int(np.ceil(np.sqrt(len(frames))))
    rows = int(np.ceil(len(frames) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), layout="constrained")
    for index, ax in enumerate(np.atleast_1d(axes).flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(frames):
            ax.set_axis_off()
            continue
        ax.imshow(frames[index])
        ax.set_xlabel(f"{frame_times[index]:.2f} s" if frame_times is not None else f"frame {index}", fontsize=8)
    figure.suptitle("face crops the model sees (time in the video under each)")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_spectrogram_preview(
    audio_values: torch.Tensor,
    path: str | os.PathLike,
    frame_shift_ms: float = 10.0,
    frame_times: Sequence[float] | None = None,
    clip_start: float = 0.0,
) -> None:
    """Saves a spectrogram `(1, time, mel)` with a time axis (seconds of the video) and a mel-bin axis; the span each
    sampled frame covers is marked along the top when `frame_times` are given."""
    plt = import_pyplot()
    spectrogram = audio_values[0].float().T.numpy()
    num_mel_bins, num_rows = spectrogram.shape
    # digital silence sits at the log floor, far below speech: scale from the 5th percentile so speech keeps contrast
    low = float(np.quantile(spectrogram, 0.05))
    end = clip_start + num_rows * frame_shift_ms / 1000
    figure, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    image = ax.imshow(
        spectrogram, origin="lower", aspect="auto", extent=(clip_start, end, 0, num_mel_bins), vmin=low, cmap="magma"
    )
    figure.colorbar(image, ax=ax, label="log mel energy (normalised)")
    ax.set_xlabel("time in the video (s)")
    ax.set_ylabel("mel bin (low to high frequency)")
    if frame_times is not None:
        times = np.asarray(frame_times, dtype=float)
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.04
        for number, time_s in enumerate(times):
            ax.axvspan(time_s, time_s + step, ymin=0.94, ymax=1.0, color="C0" if number % 2 else "C1", alpha=0.9)
        ax.set_title("audio input (fbank); bars on top: the span of each sampled frame")
    else:
        ax.set_title("audio input (fbank)")
    figure.savefig(path, dpi=100)
    plt.close(figure)


@dataclass
class DemoResult:
    """What [`run_demo`] did: the prediction, whether the weights were pretrained, and the figures written."""

    prediction: VideoPrediction
    pretrained: bool
    size: str
    files: list[Path]
    explanation: str = ""


UNTRAINED_EXPLANATION = (
    "The model is randomly initialised (nothing is downloaded), so its scores say nothing about the video: a random "
    "head spreads probability over its labels by chance. For real predictions, convert a fine-tuned checkpoint "
    "(`avfmae convert --checkpoint checkpoint-best.pth --dataset MAFW --output-dir model`) and pass --model model."
)


def run_demo(
    video: str | os.PathLike | None = None,
    model_name_or_path: str | os.PathLike | None = None,
    size: str = "base",
    output_dir: str | os.PathLike = "avfmae-demo",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> DemoResult:
    """The offline demo: one talking-face video (default: the bundled sample) through the processor (face crop,
    sliding windows of 16 frames, Kaldi fbank aligned to the frames) and AVF-MAE++. Without `model_name_or_path` the
    model of size `size` is randomly initialised, since nothing is downloaded. Writes into `output_dir`: the face
    crops of the first window with their timestamps, its spectrogram with time and mel axes, and the emotions over
    time of every window."""
    video = Path(video) if video is not None else sample_video_path()
    model, processor, pretrained = load_classifier(model_name_or_path, size, device=device, dtype=dtype)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    (result,) = iter_window_outputs(
        [str(video)], _classifier_forward(model), processor, device=model.device, sampling_mode="sliding"
    )
    if isinstance(result, ProcessedVideo):
        raise result.error
    prediction, inputs = _video_prediction(result, labels), result.video.inputs
    start, end = prediction.windows[0].start, prediction.windows[0].end
    num_frames = inputs["pixel_values"].shape[1]
    frame_times = list(np.linspace(start, end, num_frames, endpoint=False)) if start is not None else None
    files = [output_dir / "face_crops.png", output_dir / "spectrogram.png", output_dir / "emotions_over_time.png"]
    video_processor = processor.video_processor
    save_clip_preview(
        inputs["pixel_values"][0], files[0], video_processor.image_mean, video_processor.image_std, frame_times
    )
    save_spectrogram_preview(
        inputs["audio_values"][0],
        files[1],
        processor.feature_extractor.frame_shift,
        frame_times,
        clip_start=start or 0.0,
    )
    plot_emotions_over_time(prediction, files[2])
    return DemoResult(
        prediction=prediction,
        pretrained=pretrained,
        size=size,
        files=files,
        explanation="" if pretrained else UNTRAINED_EXPLANATION,
    )


__all__ = [
    "DemoResult",
    "ModelFolderError",
    "ProcessedVideo",
    "VideoFailure",
    "VideoFeatures",
    "VideoPrediction",
    "VideoWindowsDataset",
    "WindowOutputs",
    "WindowPrediction",
    "companion_audio",
    "extract_features",
    "import_pyplot",
    "iter_features",
    "iter_predictions",
    "iter_window_outputs",
    "load_backbone",
    "load_classifier",
    "load_model_config",
    "load_processor",
    "plot_emotions_over_time",
    "plot_file_name",
    "predict_videos",
    "resolve_device",
    "run_demo",
    "sample_video_path",
    "save_clip_preview",
    "save_spectrogram_preview",
    "video_name",
    "write_predictions_csv",
]
