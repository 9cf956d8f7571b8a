# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Single-video inference: emotion predictions, audio-visual features and the offline demo."""

import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging

from .configuration_avfmae import AVFMAEConfig
from .modeling_avfmae import AVFMAEForVideoClassification, AVFMAEModel
from .processing_avfmae import AVFMAEProcessor


logger = logging.get_logger(__name__)

SAMPLE_VIDEO = "sample_talking_face.mp4"


def sample_video_path() -> Path:
    """The short public-domain talking-face clip shipped with the package (a NASA portrait and synthetic speech)."""
    return Path(str(resources.files(__package__) / "data" / SAMPLE_VIDEO))


def load_classifier(
    model_name_or_path: str | os.PathLike | None = None, size: str = "base"
) -> tuple[AVFMAEForVideoClassification, AVFMAEProcessor, bool]:
    """A classification model and its processor from a converted or saved model folder, or, without one, a freshly
    initialised model of size `size` (nothing is downloaded). Returns `(model, processor, pretrained)`."""
    if model_name_or_path is None:
        model = AVFMAEForVideoClassification(AVFMAEConfig.from_size(size))
        return model.eval(), AVFMAEProcessor.for_model_config(model.config), False
    model = AVFMAEForVideoClassification.from_pretrained(model_name_or_path)
    return model.eval(), load_processor(model_name_or_path, model.config), True


@dataclass
class VideoPrediction:
    """What the model says about one video."""

    video: str
    scores: dict[str, float]
    features: np.ndarray
    face_found: bool | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda item: item[1], reverse=True)[:k]


def predict_processed(
    model: AVFMAEForVideoClassification, inputs, names: list[str], processing_s: float = 0.0
) -> list[VideoPrediction]:
    """Predictions for a batch the processor already made (`inputs`), one per name."""
    began = time.perf_counter()
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"], audio_values=inputs.get("audio_values"))
    model_s = time.perf_counter() - began
    if model.config.problem_type == "regression":
        scores = outputs.logits
    elif model.config.problem_type == "multi_label_classification":
        scores = outputs.logits.sigmoid()
    else:
        scores = outputs.logits.softmax(dim=-1)
    labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    face_found = inputs.get("face_found")
    timings = {"processing_s": processing_s / len(names), "model_s": model_s / len(names)}
    return [
        VideoPrediction(
            video=name,
            scores=dict(zip(labels, scores[position].tolist(), strict=True)),
            features=outputs.pooler_output[position].numpy(),
            face_found=None if face_found is None else bool(face_found[position]),
            timings=dict(timings),
        )
        for position, name in enumerate(names)
    ]


def predict_videos(
    videos: list,
    model: AVFMAEForVideoClassification,
    processor: AVFMAEProcessor,
    *,
    batch_size: int = 4,
    **processor_kwargs,
) -> list[VideoPrediction]:
    """Runs the processor and the model on `videos` (paths or anything the processor takes), `batch_size` at a time.

    `scores` are softmax probabilities per label (sigmoids for multi-label models, raw outputs for regression);
    `features` is the pooled, `fc_norm`-ed audio-visual feature the classifier reads.
    """
    predictions = []
    for start in range(0, len(videos), batch_size):
        batch = videos[start : start + batch_size]
        began = time.perf_counter()
        inputs = processor(videos=batch, return_tensors="pt", **processor_kwargs)
        names = [
            str(video) if isinstance(video, (str, os.PathLike)) else f"video {start + position}"
            for position, video in enumerate(batch)
        ]
        predictions += predict_processed(model, inputs, names, time.perf_counter() - began)
    return predictions


def extract_features(
    videos: list,
    model: AVFMAEModel,
    processor: AVFMAEProcessor,
    *,
    batch_size: int = 4,
    **processor_kwargs,
) -> torch.Tensor:
    """Pooled audio-visual features `(num_videos, 2 * hidden_size)` (`(num_videos, hidden_size)` for a video-only
    model): the concatenated means of the fused video and audio tokens, before any classification head."""
    features = []
    for start in range(0, len(videos), batch_size):
        inputs = processor(videos=videos[start : start + batch_size], return_tensors="pt", **processor_kwargs)
        with torch.no_grad():
            outputs = model(pixel_values=inputs["pixel_values"], audio_values=inputs.get("audio_values"))
        features.append(outputs.pooler_output)
    return torch.cat(features)


def load_processor(model_name_or_path: str | os.PathLike, config: AVFMAEConfig) -> AVFMAEProcessor:
    """The processor saved with a model, or the config's default when the folder has none."""
    try:
        return AVFMAEProcessor.from_pretrained(model_name_or_path)
    except OSError:
        logger.warning(f"{model_name_or_path} has no processor configuration; using the model's default processor.")
        return AVFMAEProcessor.for_model_config(config)


def save_clip_preview(pixel_values: torch.Tensor, path: str | os.PathLike, image_mean, image_std) -> None:
    """Saves the frames of one clip `(T, 3, H, W)` (normalised) as a grid image."""
    from PIL import Image

    mean = torch.tensor(image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_std).view(1, 3, 1, 1)
    frames = ((pixel_values * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    num_frames, _, height, width = frames.shape
    columns = int(np.ceil(np.sqrt(num_frames)))
    rows = int(np.ceil(num_frames / columns))
    grid = torch.zeros(rows * height, columns * width, 3, dtype=torch.uint8)
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = frame.permute(1, 2, 0)
    Image.fromarray(grid.numpy()).save(path)


def save_spectrogram_preview(audio_values: torch.Tensor, path: str | os.PathLike) -> None:
    """Saves a spectrogram `(1, time, mel)` as an image: time to the right, low frequencies at the bottom."""
    from PIL import Image

    spectrogram = audio_values[0].T.flip(0)
    # digital silence sits at the log floor, far below speech: scale from the 5th percentile so speech keeps contrast
    low, high = torch.quantile(spectrogram.flatten(), 0.05), spectrogram.max()
    scaled = ((spectrogram - low) / (high - low).clamp(min=1e-6)).clamp(0, 1).mul(255).round().to(torch.uint8)
    Image.fromarray(scaled.numpy()).resize((spectrogram.shape[1] * 2, spectrogram.shape[0] * 2)).save(path)


@dataclass
class DemoResult:
    """What [`run_demo`] did: the prediction, whether the weights were pretrained, and the preview images."""

    prediction: VideoPrediction
    pretrained: bool
    size: str
    files: list[Path]


def run_demo(
    video: str | os.PathLike | None = None,
    model_name_or_path: str | os.PathLike | None = None,
    size: str = "base",
    output_dir: str | os.PathLike = "avfmae-demo",
) -> DemoResult:
    """The offline demo: one talking-face video (default: the bundled sample) through the processor (face crop, 16
    frames, Kaldi fbank aligned to the frames) and AVF-MAE++. Without `model_name_or_path` the model of size `size` is
    randomly initialised, since nothing is downloaded. Writes previews of the face crops and the spectrogram into
    `output_dir`."""
    video = Path(video) if video is not None else sample_video_path()
    model, processor, pretrained = load_classifier(model_name_or_path, size)
    began = time.perf_counter()
    inputs = processor(videos=str(video), return_tensors="pt")
    prediction = predict_processed(model, inputs, [str(video)], time.perf_counter() - began)[0]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = [output_dir / "face_crops.png", output_dir / "spectrogram.png"]
    video_processor = processor.video_processor
    save_clip_preview(inputs["pixel_values"][0], files[0], video_processor.image_mean, video_processor.image_std)
    save_spectrogram_preview(inputs["audio_values"][0], files[1])
    return DemoResult(prediction=prediction, pretrained=pretrained, size=size, files=files)


__all__ = [
    "DemoResult",
    "VideoPrediction",
    "extract_features",
    "load_classifier",
    "load_processor",
    "predict_processed",
    "predict_videos",
    "run_demo",
    "sample_video_path",
    "save_clip_preview",
    "save_spectrogram_preview",
]
