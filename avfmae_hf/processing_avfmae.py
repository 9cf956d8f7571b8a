# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ processor: videos (and their audio) in, `pixel_values` and `audio_values` out, in one call."""

import os
from typing import Any, Unpack

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import AudioKwargs, ProcessingKwargs, ProcessorMixin
from transformers.utils import logging

from .errors_avfmae import describe_item
from .feature_extraction_avfmae import AVFMAEFeatureExtractor, draw_audio_gain
from .random_avfmae import as_numpy_random
from .video_decoding_avfmae import VideoSource
from .video_processing_avfmae import (
    DEFAULT_FRAME_RATE,
    AVFMAEVideoProcessor,
    AVFMAEVideoProcessorKwargs,
    ProcessedClip,
    audio_sample_range,
    batch_feature,
    clip_outputs,
    new_output_tensor,
    split_videos,
)


logger = logging.get_logger(__name__)

MISSING_AUDIO_POLICIES = ("error", "silence")
# An audio slice may exceed the spectrogram's span by this share before a warning says that the end of the frames'
# span is not heard (at the official 25 fps a window's slice is 64 / (n - 1) of the track, about the 2.56 s span).
AUDIO_SPAN_TOLERANCE = 0.1
# Audio and video lengths may differ by this much (or a tenth of the video) before a warning says that windows get
# drifting sound; encoders pad audio by tens of milliseconds.
AUDIO_DURATION_MISMATCH_SECONDS = 0.5


class AVFMAEVideosKwargs(AVFMAEVideoProcessorKwargs, total=False):
    """The video options of a processor call: every [`AVFMAEVideoProcessor`] option, the `"test"` segment and the
    hooks of the training augmentations (see [`AVFMAEVideoProcessor.process_source`]; the audio follows the frames
    `frame_sampler` picks)."""

    test_segment: int
    frame_sampler: Any
    frame_transform: Any


class AVFMAEAudioKwargs(AudioKwargs, total=False):
    """The audio options of a processor call (see [`AVFMAEFeatureExtractor`]); `sampling_rate` may be one per video."""

    sampling_rate: int | list[int] | None
    audio_gain_jitter: bool | None
    audio_gains: Any


class AVFMAEProcessorKwargs(ProcessingKwargs, total=False):
    """Keyword arguments of [`AVFMAEProcessor.__call__`], in transformers' typed processor-kwargs layout: per modality
    (`videos_kwargs`, `audio_kwargs`), common (`common_kwargs`: `return_tensors`) or flat (`generator`, shared by
    the frame sampling and the audio gains). Every modality option may also be passed flat, e.g.
    `sampling_mode="sliding"`. The processor's own settings (`missing_audio`, `align_audio`) are not call
    arguments."""

    videos_kwargs: AVFMAEVideosKwargs
    audio_kwargs: AVFMAEAudioKwargs
    generator: Any


class AVFMAEProcessor(ProcessorMixin):
    r"""
    Bundles [`AVFMAEVideoProcessor`] and [`AVFMAEFeatureExtractor`]: one call turns talking-face videos into the
    inputs of AVF-MAE++.

    For every video it samples and processes the frames, then takes the audio (from the video's own audio stream, or
    from `audio`), resamples it to 16 kHz mono and cuts the part that matches the sampled frames exactly as the
    official fine-tuning loader does (architecture.md §11.3: frame `i` of `n` sits at relative time `i / (n - 1)`,
    whatever the frame rate; every clip's audio runs from its first sampled frame to one stride past its last, or
    the whole clip in `"uniform"` mode on clips of at most one window), then computes the spectrogram (256 frames,
    2.56 s). Every sampling mode takes its frames from one window of `num_frames * frame_stride` source frames (see
    [`~video_processing_avfmae`]), so at 25 fps the spectrogram covers the sampled frames; a slower video's window
    lasts longer than 2.56 s, and a warning says that the end of its span is not in the spectrogram.

    `sampling_mode="sliding"` returns every window of every video (official geometry, `window_hop` source frames
    apart, default half a window = 32 frames), stacked, with `window_start` / `window_end` (seconds), `video_index`
    and `window_padded`; frame folders and arrays are timed at 25 fps.

    Args:
        video_processor ([`AVFMAEVideoProcessor`], *optional*): the video processor (loaded by `AutoProcessor`
            through `AutoVideoProcessor`).
        feature_extractor ([`AVFMAEFeatureExtractor`], *optional*): the audio feature extractor.
        missing_audio (`str`, defaults to `"error"`): what to do with a video that has no audio stream when no audio
            is given: `"error"` raises [`MissingAudioError`]; `"silence"` uses a silent track of the video's length
            (with a warning).
        align_audio (`bool`, defaults to `True`): cut the audio to the sampled frames' time span; `False` uses the
            whole track (its first 2.56 s reach the model).

    Output of `__call__`: [`BatchFeature`] with `pixel_values` `(num_clips, num_frames, 3, 160, 160)`,
    `audio_values` `(num_clips, 1, 256, 128)` (one clip per video, or one per window in the `"sliding"` mode) and,
    when face cropping ran for at least one video, `face_found` `(num_clips,)` bool (`False` where no face was found
    and the centre crop was used). In the `"sliding"` mode also `window_start` and `window_end` `(num_clips,)`
    float32 seconds, `video_index` `(num_clips,)` int64 (the input each window came from) and `window_padded`
    `(num_clips,)` bool (the video is shorter than one window, whose last frame was repeated as the official code
    pads). None of these but `pixel_values` and `audio_values` are model inputs: drop them before `model(**inputs)`.

    For throughput, run the processor in `torch.utils.data.DataLoader` workers on whole batches: inside a worker the
    outputs are allocated in shared memory, so they reach the main process without a copy (benchmarks/README.md).

    Example:

    ```python
    >>> from avfmae_hf import AVFMAEProcessor
    >>> processor = AVFMAEProcessor()
    >>> inputs = processor(videos="avfmae_hf/data/sample_talking_face.mp4", return_tensors="pt")
    >>> inputs["pixel_values"].shape, inputs["audio_values"].shape, inputs["face_found"]
    (torch.Size([1, 16, 3, 160, 160]), torch.Size([1, 1, 256, 128]), tensor([True]))

    ```
    """

    valid_processor_kwargs = AVFMAEProcessorKwargs

    def __init__(
        self,
        video_processor: AVFMAEVideoProcessor | None = None,
        feature_extractor: AVFMAEFeatureExtractor | None = None,
        missing_audio: str = "error",
        align_audio: bool = True,
        **kwargs,
    ):
        if missing_audio not in MISSING_AUDIO_POLICIES:
            raise ValueError(f"Unknown missing_audio {missing_audio!r}; choose one of {MISSING_AUDIO_POLICIES}.")
        self.missing_audio = missing_audio
        self.align_audio = align_audio
        super().__init__(
            video_processor if video_processor is not None else AVFMAEVideoProcessor(),
            feature_extractor if feature_extractor is not None else AVFMAEFeatureExtractor(),
            **kwargs,
        )

    @classmethod
    def for_model_config(cls, config) -> "AVFMAEProcessor":
        """The default processor for an [`AVFMAEConfig`]: frames, frame size, fbank length and mel bins of its towers."""
        video, audio = config.video_config, config.audio_config
        return cls(
            AVFMAEVideoProcessor(
                num_frames=video.num_frames, size={"height": video.image_size, "width": video.image_size}
            ),
            AVFMAEFeatureExtractor(max_length=audio.max_length, num_mel_bins=audio.num_mel_bins),
        )

    def _check_kwargs(self, kwargs: dict) -> None:
        """Raise `TypeError` for a call argument that no part of the processor takes."""
        modalities = ("videos_kwargs", "audio_kwargs", "common_kwargs")
        valid = set(AVFMAEProcessorKwargs.__annotations__) | {"return_tensors", "common_kwargs"}
        valid |= set(AVFMAEVideosKwargs.__annotations__) | set(AVFMAEAudioKwargs.__annotations__)
        unknown = set(kwargs) - valid
        for modality in modalities:
            unknown |= {f"{modality}[{key!r}]" for key in kwargs.get(modality, {}) if key not in valid}
        for modality in ("text_kwargs", "images_kwargs"):  # no text or image inputs
            unknown |= {f"{modality}[{key!r}]" for key in kwargs.get(modality) or {}}
        if unknown:
            raise TypeError(f"AVFMAEProcessor got unknown arguments {sorted(unknown)}.")

    def __call__(
        self, videos: object = None, audio: object = None, **kwargs: Unpack[AVFMAEProcessorKwargs]
    ) -> BatchFeature:
        """Process a video or a batch of videos with their audio.

        Args:
            videos: one video or a list (see [`AVFMAEVideoProcessor.preprocess`]): paths to video files or frame
                folders, bytes, binary file objects, `(T, H, W[, C])` or `(T, C, H, W)` arrays/tensors (uint8, or
                float in [0, 1]), lists of frames.
            audio (*optional*): the audio of each video, in the same order: waveforms (arrays or tensors, mono or
                several channels), or paths / bytes of audio files. `None` reads each video's own audio stream. With
                `videos=None`, only `audio_values` are computed (whole waveforms).
            kwargs ([`AVFMAEProcessorKwargs`]): flat or grouped (`videos_kwargs={...}`, `audio_kwargs={...}`):
                - video options: any [`AVFMAEVideoProcessor`] option (`sampling_mode`: `"center"`, `"uniform"`,
                  `"sliding"`, `"train"` or `"test"`; `window_hop`: start-to-start distance of the `"sliding"`
                  windows in source frames, default half a window = 32, must be positive; `do_face_crop`, `size`,
                  ...), `test_segment` (segment index in the `"test"` mode, default 0) and the augmentation hooks
                  `frame_sampler` / `frame_transform` (see [`AVFMAEVideoProcessor.process_source`]);
                - audio options: `sampling_rate` (`int` or one per video) of waveforms given as arrays,
                  `audio_gain_jitter` and `audio_gains` (the official random audio gain, see
                  [`AVFMAEFeatureExtractor`]);
                - `generator`: randomness of the `"train"` mode and of `audio_gain_jitter`: a
                  `numpy.random.Generator`, a `numpy.random.RandomState` or an `int` seed (seeds a `RandomState`,
                  drawn in the official order: each video's window, then its audio gain);
                - `return_tensors`: `"pt"` for torch tensors, `"np"` or `None` for numpy arrays.
            An argument that none of these names raises `TypeError`.
        """
        self._check_kwargs(kwargs)
        if videos is None and audio is None:
            raise ValueError("Pass `videos`, `audio` or both.")
        merged = self._merge_kwargs(AVFMAEProcessorKwargs, **kwargs)
        video_options, audio_options = dict(merged["videos_kwargs"]), dict(merged["audio_kwargs"])
        return_tensors = video_options.pop("return_tensors", None)
        return_tensors = audio_options.pop("return_tensors", None) or return_tensors
        generator = merged.get("generator")
        generator = as_numpy_random(generator) if generator is not None else None
        sampling_rate = audio_options.pop("sampling_rate", None)
        audio_gain_jitter = audio_options.pop("audio_gain_jitter", None)
        audio_gains = audio_options.pop("audio_gains", None)
        if videos is None:
            return self.feature_extractor(
                audio,
                sampling_rate=sampling_rate,
                return_tensors=return_tensors,
                audio_gain_jitter=audio_gain_jitter,
                generator=generator,
                audio_gains=audio_gains,
                **audio_options,
            )
        self.feature_extractor.check_unsupported(**audio_options)
        missing_audio, align_audio = self.missing_audio, self.align_audio
        test_segment = video_options.pop("test_segment", None) or 0
        hooks = {key: video_options.pop(key, None) for key in ("frame_sampler", "frame_transform")}
        options = self.video_processor.resolve_options(**video_options)
        videos = split_videos(videos)
        audios = _split_audio(audio, len(videos))
        rates = list(sampling_rate) if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * len(videos)
        if len(rates) != len(videos):
            raise ValueError(f"Got {len(rates)} sampling rates for {len(videos)} videos.")
        if audio_gains is not None:
            audio_gains = [float(audio_gains)] * len(videos) if np.isscalar(audio_gains) else list(audio_gains)
            if len(audio_gains) != len(videos):
                raise ValueError(f"Got {len(audio_gains)} audio gains for {len(videos)} videos.")
        jitter = self.feature_extractor.audio_gain_jitter if audio_gain_jitter is None else audio_gain_jitter

        sliding = options["sampling_mode"] == "sliding"
        pixel_values = None if sliding else self.video_processor.allocate(len(videos), options)
        waveforms, clips = [], []
        for index, video in enumerate(videos):
            out = None if pixel_values is None else pixel_values[index]
            video_clips = self.video_processor.process_video(
                video, index, test_segment, generator, out, options, **hooks
            )
            try:
                waveform = self._video_waveform(video_clips[0].source, audios[index], rates[index], missing_audio)
            finally:
                video_clips[0].source.close()
            gain = audio_gains[index] if audio_gains is not None else draw_audio_gain(generator) if jitter else None
            if align_audio:
                self._check_audio_timing(video_clips[0], waveform)
            for clip in video_clips:
                waveforms.append((self._clip_waveform(clip, waveform) if align_audio else waveform, gain))
            clips.extend(video_clips)

        if pixel_values is None:
            pixel_values = self.video_processor.stack_clips(clips, options)
        audio_values = new_output_tensor(
            len(clips), 1, self.feature_extractor.max_length, self.feature_extractor.num_mel_bins
        )
        for row, (waveform, gain) in enumerate(waveforms):
            audio_values[row] = self.feature_extractor.compute_fbank(waveform, gain)
        data = clip_outputs(pixel_values, clips, sliding)
        data["audio_values"] = audio_values
        outputs = batch_feature(data, return_tensors)
        return outputs.to(options["device"]) if options["device"] is not None else outputs

    def _video_waveform(
        self, source: VideoSource, audio: object, sampling_rate: int | None, missing_audio: str
    ) -> torch.Tensor:
        """The whole 16 kHz mono waveform that goes with a video (given, read from it, or silence)."""
        if audio is None:
            if source.has_audio or missing_audio == "error":
                audio, sampling_rate = source.read_audio()
            else:
                audio, sampling_rate = self._silence(source), self.feature_extractor.sampling_rate
        # Errors name the audio file when the audio comes from one, else the video.
        name = audio if isinstance(audio, (str, os.PathLike)) else source.name
        return self.feature_extractor.prepare_waveform(audio, sampling_rate, index=source.index, name=name)

    def _clip_waveform(self, clip: ProcessedClip, waveform: torch.Tensor) -> torch.Tensor:
        """The part of a video's waveform that matches a processed clip's frames (official relative rule)."""
        start, end = self._clip_sample_range(clip, waveform.shape[0])
        return waveform[start:end]

    def _clip_sample_range(self, clip: ProcessedClip, num_samples: int) -> tuple[int, int]:
        extractor = self.feature_extractor
        return audio_sample_range(
            clip.sampling.audio_start_frame,
            clip.sampling.audio_end_frame,
            clip.sampling.total_frames,
            num_samples,
            sampling_rate=extractor.sampling_rate,
            whole_file_seconds=extractor.max_length * extractor.frame_shift / 1000,
            index=clip.source.index,
            name=clip.source.name,
        )

    def _check_audio_timing(self, clip: ProcessedClip, waveform: torch.Tensor) -> None:
        """Warns, once per video, where the official relative rule gives a window other audio than its frames':
        an audio track much shorter or longer than the video (its windows are matched by relative position, so
        their sound drifts), and frames that span more audio than the spectrogram holds (below 25 fps)."""
        source, extractor = clip.source, self.feature_extractor
        rate = extractor.sampling_rate
        audio_seconds = waveform.shape[0] / rate
        if source.fps:
            video_seconds = source.num_frames / source.fps
            if abs(audio_seconds - video_seconds) > max(AUDIO_DURATION_MISMATCH_SECONDS, 0.1 * video_seconds):
                logger.warning(
                    f"{describe_item(source.index, source.name)}: the audio lasts {audio_seconds:.2f} s and the video "
                    f"{video_seconds:.2f} s; audio is matched to frames by their relative position in the clip (the "
                    f"official rule), so a window's sound is off by up to {abs(audio_seconds - video_seconds):.2f} s."
                )
        start, end = self._clip_sample_range(clip, waveform.shape[0])
        span_samples = (extractor.max_length - 1) * extractor.frame_shift / 1000 * rate + extractor.min_num_samples
        if end - start > (1 + AUDIO_SPAN_TOLERANCE) * span_samples:
            logger.warning(
                f"{describe_item(source.index, source.name)}: the sampled frames span {(end - start) / rate:.2f} s of "
                f"audio but the spectrogram of {extractor.max_length} fbank frames holds {span_samples / rate:.2f} s "
                f"(a video below 25 fps, or a short max_length); the end of the frames' span is not heard."
            )
        elif source.fps and source.fps > (1 + AUDIO_SPAN_TOLERANCE) * DEFAULT_FRAME_RATE:
            if end - start < (1 - AUDIO_SPAN_TOLERANCE) * span_samples:
                # frames, not seconds, are sampled (the official rule): faster videos get shorter windows
                logger.warning_once(
                    f"At {source.fps:g} fps a window's frames span {(end - start) / rate:.2f} s, so its spectrogram "
                    f"of {span_samples / rate:.2f} s is partly padding: windows are counted in frames (the official "
                    f"sampling), and the released models were trained on 25 fps clips."
                )

    def _silence(self, source: VideoSource) -> np.ndarray:
        """A silent track as long as the video (frames at its own rate, or 25 fps when it has none)."""
        fps = source.fps or DEFAULT_FRAME_RATE
        duration = source.num_frames / fps
        logger.warning(
            f"{describe_item(source.index, source.name)}: the video has no audio stream; using {duration:.2f} s of "
            f"silence (missing_audio='silence')."
        )
        num_samples = max(int(round(duration * self.feature_extractor.sampling_rate)), 1)
        return np.zeros(max(num_samples, self.feature_extractor.min_num_samples), dtype=np.float32)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "audio_values"]


def _split_audio(audio: object, num_videos: int) -> list:
    """One audio item (or `None`) per video."""
    if audio is None:
        return [None] * num_videos
    if isinstance(audio, (list, tuple)) and not all(isinstance(value, (int, float, np.number)) for value in audio):
        if len(audio) != num_videos:
            raise ValueError(f"Got {len(audio)} audio items for {num_videos} videos; pass one per video.")
        return list(audio)
    if num_videos != 1:
        raise ValueError(f"Got one audio item for {num_videos} videos; pass a list with one per video.")
    return [audio]


__all__ = ["AVFMAEProcessor"]
