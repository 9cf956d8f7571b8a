# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ processor: videos (and their audio) in, `pixel_values` and `audio_values` out, in one call."""

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import TensorType, logging

from .errors_avfmae import describe_item
from .feature_extraction_avfmae import AVFMAEFeatureExtractor, draw_audio_gain
from .random_avfmae import RandomSource, as_numpy_random
from .video_decoding_avfmae import VideoSource
from .video_processing_avfmae import (
    AVFMAEVideoProcessor,
    FrameSampling,
    ProcessedClip,
    audio_sample_range,
    batch_feature,
    new_output_tensor,
    split_videos,
)


logger = logging.get_logger(__name__)

MISSING_AUDIO_POLICIES = ("error", "silence")
# Frame rate assumed for frame folders and arrays when silence has to stand in for their audio (the official
# datasets are 25 fps).
DEFAULT_FRAME_RATE = 25.0


class AVFMAEProcessor(ProcessorMixin):
    r"""
    Bundles [`AVFMAEVideoProcessor`] and [`AVFMAEFeatureExtractor`]: one call turns talking-face videos into the
    inputs of AVF-MAE++.

    For every video it samples and processes the frames, then takes the audio (from the video's own audio stream, or
    from `audio`), resamples it to 16 kHz mono and cuts the part that matches the sampled frames exactly as the
    official fine-tuning loader does (architecture.md §11.3: frame `i` of `n` sits at relative time `i / (n - 1)`,
    whatever the frame rate; the `"train"` mode takes the 64 frames from the first sampled one, the `"test"` mode the
    segment plus one stride, `"uniform"` the whole clip), then computes the spectrogram. The spectrogram is cut or
    padded to 256 frames (2.56 s), so in `"uniform"` mode only the first 2.56 s of a longer clip's audio reach the
    model.

    Args:
        image_processor ([`AVFMAEVideoProcessor`], *optional*): the video processor (held under the name
            `image_processor` so that `AutoProcessor` loads it through `AutoImageProcessor`, which works without
            torchvision; see [`AVFMAEVideoProcessor`]).
        feature_extractor ([`AVFMAEFeatureExtractor`], *optional*): the audio feature extractor.
        missing_audio (`str`, defaults to `"error"`): what to do with a video that has no audio stream when no audio
            is given: `"error"` raises [`MissingAudioError`]; `"silence"` uses a silent track of the video's length
            (with a warning).
        align_audio (`bool`, defaults to `True`): cut the audio to the sampled frames' time span; `False` uses the
            whole track (its first 2.56 s reach the model).

    Output of `__call__`: [`BatchFeature`] with `pixel_values` `(batch_size, num_frames, 3, 160, 160)`,
    `audio_values` `(batch_size, 1, 256, 128)` and, when face cropping ran for at least one video, `face_found`
    `(batch_size,)` bool (`False` where no face was found and the centre crop was used). `face_found` is not a model
    input: drop it before `model(**inputs)` if the model does not accept it.

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

    def __init__(
        self,
        image_processor: AVFMAEVideoProcessor | None = None,
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
            image_processor if image_processor is not None else AVFMAEVideoProcessor(),
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

    @property
    def video_processor(self) -> AVFMAEVideoProcessor:
        """The video processor (the same object as `image_processor`)."""
        return self.image_processor

    def __call__(
        self,
        videos: object = None,
        audio: object = None,
        sampling_rate: int | Sequence[int] | None = None,
        return_tensors: str | TensorType | None = None,
        sampling_mode: str | None = None,
        test_segment: int = 0,
        generator: RandomSource = None,
        do_face_crop: bool | None = None,
        missing_audio: str | None = None,
        align_audio: bool | None = None,
        audio_gain_jitter: bool | None = None,
        audio_gains: Sequence[float] | float | None = None,
        frame_sampler: "Callable[[int], FrameSampling] | None" = None,
        frame_transform: "Callable[[list[np.ndarray]], list[np.ndarray]] | None" = None,
        **kwargs,
    ) -> BatchFeature:
        """Process a video or a batch of videos with their audio.

        Args:
            videos: one video or a list (see [`AVFMAEVideoProcessor.preprocess`]): paths to video files or frame
                folders, bytes, binary file objects, `(T, H, W[, C])` uint8 arrays/tensors, lists of frames.
            audio (*optional*): the audio of each video, in the same order: waveforms (arrays or tensors, mono or
                several channels), or paths / bytes of audio files. `None` reads each video's own audio stream. With
                `videos=None`, only `audio_values` are computed (whole waveforms).
            sampling_rate (`int` or list of `int`, *optional*): sampling rate(s) of waveforms given as arrays.
            return_tensors (`str`, *optional*): `"pt"` for torch tensors, `"np"` or `None` for numpy arrays.
            sampling_mode (`str`, *optional*): `"uniform"`, `"train"` or `"test"` (see [`AVFMAEVideoProcessor`]).
            test_segment (`int`, defaults to 0): segment index in the `"test"` mode.
            generator (*optional*): randomness of the `"train"` mode and of `audio_gain_jitter`: a
                `numpy.random.Generator`, a `numpy.random.RandomState` or an `int` seed (seeds a `RandomState`,
                drawn in the official order: each video's window, then its audio gain).
            do_face_crop (`bool`, *optional*): override the video processor's setting.
            missing_audio (`str`, *optional*), align_audio (`bool`, *optional*): override the instance settings.
            audio_gain_jitter (`bool`, *optional*), audio_gains (*optional*): the official random audio gain (see
                [`AVFMAEFeatureExtractor`]).
            frame_sampler, frame_transform (*optional*): hooks of the training augmentations (see
                [`AVFMAEVideoProcessor.process_source`]); the audio follows the frames `frame_sampler` picks.
        """
        if kwargs:
            logger.warning_once(f"AVFMAEProcessor ignores the arguments {sorted(kwargs)}.")
        if videos is None and audio is None:
            raise ValueError("Pass `videos`, `audio` or both.")
        generator = as_numpy_random(generator) if generator is not None else None
        if videos is None:
            return self.feature_extractor(
                audio,
                sampling_rate=sampling_rate,
                return_tensors=return_tensors,
                audio_gain_jitter=audio_gain_jitter,
                generator=generator,
                audio_gains=audio_gains,
            )
        missing_audio = missing_audio or self.missing_audio
        if missing_audio not in MISSING_AUDIO_POLICIES:
            raise ValueError(f"Unknown missing_audio {missing_audio!r}; choose one of {MISSING_AUDIO_POLICIES}.")
        align_audio = self.align_audio if align_audio is None else align_audio
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

        pixel_values = self.image_processor.allocate(len(videos))
        audio_values = new_output_tensor(
            len(videos), 1, self.feature_extractor.max_length, self.feature_extractor.num_mel_bins
        )
        face_found = []
        for index, video in enumerate(videos):
            clip = self.image_processor.process_video(
                video,
                index,
                sampling_mode,
                test_segment,
                generator,
                do_face_crop,
                pixel_values[index],
                frame_sampler,
                frame_transform,
            )
            try:
                waveform = self._clip_waveform(clip, audios[index], rates[index], missing_audio, align_audio)
            finally:
                clip.source.close()
            if audio_gains is not None:
                gain = audio_gains[index]
            else:
                gain = draw_audio_gain(generator) if jitter else None
            audio_values[index] = self.feature_extractor.compute_fbank(waveform, gain)
            face_found.append(clip.face_found)

        data = {"pixel_values": pixel_values, "audio_values": audio_values}
        if any(found is not None for found in face_found):
            data["face_found"] = torch.tensor([found is not False for found in face_found])
        return batch_feature(data, return_tensors)

    def _clip_waveform(
        self,
        clip: ProcessedClip,
        audio: object,
        sampling_rate: int | None,
        missing_audio: str,
        align_audio: bool,
    ) -> torch.Tensor:
        """The 16 kHz mono waveform that goes with a processed clip."""
        source = clip.source
        if audio is None:
            if source.has_audio or missing_audio == "error":
                audio, sampling_rate = source.read_audio()
            else:
                audio, sampling_rate = self._silence(source), self.feature_extractor.sampling_rate
        # Errors name the audio file when the audio comes from one, else the video.
        name = audio if isinstance(audio, (str, os.PathLike)) else source.name
        waveform = self.feature_extractor.prepare_waveform(audio, sampling_rate, index=source.index, name=name)
        if not align_audio:
            return waveform
        sampling = clip.sampling
        start, end = audio_sample_range(
            sampling.audio_start_frame,
            sampling.audio_end_frame,
            sampling.total_frames,
            waveform.shape[0],
            sampling_rate=self.feature_extractor.sampling_rate,
            whole_file_seconds=self.feature_extractor.max_length * self.feature_extractor.frame_shift / 1000,
            index=source.index,
            name=source.name,
        )
        return waveform[start:end]

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
