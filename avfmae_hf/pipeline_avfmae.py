# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The `audio-video-classification` pipeline: a talking-face video in, its emotion labels with scores out.

Importing `avfmae_hf` registers it with transformers' pipeline registry; exported folders also declare it in their
config (`custom_pipelines`) and carry this file, so that `pipeline(model=folder, trust_remote_code=True)` works with
transformers alone. The file imports only torch and transformers for that reason.
"""

import copy

import torch
from transformers import AutoProcessor
from transformers.pipelines.base import Pipeline


PIPELINE_TASK = "audio-video-classification"
# The task name exported folders declare for remote code. transformers requires `trust_remote_code=True` for every
# task a config lists in `custom_pipelines`, even when the task is also registered locally, so the declared name
# differs from the registered one: `pipeline("audio-video-classification", model=folder)` keeps working without it.
REMOTE_PIPELINE_TASK = "avfmae-audio-video-classification"


def probabilities(config, logits: torch.Tensor) -> torch.Tensor:
    """Scores per label from a classifier's logits: softmax probabilities (sigmoids for multi-label models, the raw
    outputs for regression)."""
    logits = logits.float()
    if config.problem_type == "regression":
        return logits
    if config.problem_type == "multi_label_classification":
        return logits.sigmoid()
    return logits.softmax(dim=-1)


class AVFMAEAudioVideoClassificationPipeline(Pipeline):
    r"""
    Emotion labels of a talking-face video with AVF-MAE++: face crop, every window of 16 frames (stride 4, a new
    window every `window_hop` source frames) with the audio of the same span, the classifier on every window, and the
    mean of the windows' probabilities.

    Inputs: a path (video file or frame folder), the bytes of a video file, or frames (a `(T, H, W, 3)` uint8 array
    or tensor), optionally with `audio` (a waveform with `sampling_rate`, or an audio file); a dict
    `{"video": ..., "audio": ..., "sampling_rate": ...}` per video works too. A list is a list of videos.

    Returns `[{"label", "score"}]` sorted by score (`top_k` entries, default 5), one list per input.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> classifier = pipeline("audio-video-classification", model="path/to/converted-model")  # doctest: +SKIP
    >>> classifier("talking_face.mp4", top_k=2)  # doctest: +SKIP
    [{'label': 'happiness', 'score': 0.61}, {'label': 'neutral', 'score': 0.17}]
    ```
    """

    # The processor is loaded here rather than by `pipeline()`, which passes its model-loading arguments (`dtype`,
    # `code_revision`, ...) on to the processor, whose constructor refuses arguments it does not know.
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            # loaded as a repository's code (transformers_modules.*), the user has already trusted that repository
            remote = not __name__.startswith("avfmae_hf")
            self.processor = AutoProcessor.from_pretrained(self.model.name_or_path, trust_remote_code=remote)

    def _sanitize_parameters(
        self,
        top_k=None,
        audio=None,
        sampling_rate=None,
        window_hop=None,
        missing_audio=None,
        batch_size=None,
        **kwargs,
    ):
        if kwargs:
            # the base class passes on whatever it does not use itself; a misspelt option must not be ignored
            known = "top_k, audio, sampling_rate, window_hop, missing_audio, batch_size, num_workers"
            raise TypeError(
                f"{type(self).__name__} got unexpected arguments {', '.join(map(repr, sorted(kwargs)))}; it takes "
                f"{known}."
            )
        preprocess = {}
        for name, value in [
            ("audio", audio),
            ("sampling_rate", sampling_rate),
            ("window_hop", window_hop),
            ("missing_audio", missing_audio),
        ]:
            if value is not None:
                preprocess[name] = value
        postprocess = {}
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
            postprocess["top_k"] = top_k
        return preprocess, {}, postprocess

    def __call__(self, inputs, **kwargs):
        """Classify one video or a list of videos (see the class docstring)."""
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs, audio=None, sampling_rate=None, window_hop=None, missing_audio=None):
        if isinstance(inputs, dict):
            audio = inputs.get("audio", audio)
            sampling_rate = inputs.get("sampling_rate", sampling_rate)
            inputs = inputs["video"]
        options = {"sampling_mode": "sliding"}
        if window_hop is not None:
            options["window_hop"] = window_hop
        processor = self.processor
        if missing_audio is not None:
            processor = copy.copy(processor)
            processor.missing_audio = missing_audio
        processed = processor(
            videos=[inputs],
            audio=None if audio is None else [audio],
            sampling_rate=sampling_rate,
            return_tensors="pt",
            **options,
        )
        model_inputs = {"pixel_values": processed["pixel_values"]}
        if "audio_values" in processed and getattr(self.model.config, "use_audio", True):
            model_inputs["audio_values"] = processed["audio_values"]
        return model_inputs

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs, top_k=5):
        config = self.model.config
        scores = probabilities(config, model_outputs["logits"]).mean(dim=0)
        top_k = min(top_k, config.num_labels)
        values, indices = scores.topk(top_k)
        return [
            {"label": config.id2label[index], "score": value}
            for value, index in zip(values.tolist(), indices.tolist(), strict=True)
        ]


__all__ = [
    "AVFMAEAudioVideoClassificationPipeline",
    "PIPELINE_TASK",
    "REMOTE_PIPELINE_TASK",
    "probabilities",
]
