# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ video processor: a video (file, bytes, frame folder or frames) in, a normalised 16-frame clip out.

Steps (architecture.md §11.2): open the input (`video_decoding_avfmae`), put variable-frame-rate videos on a constant
rate, sample `num_frames` frame indices, optionally crop and align the face (`face_detection_avfmae`), resize every
frame to 160x160 with PIL's bilinear filter (aspect ratio not kept, exactly as the official evaluation), scale to
[0, 1] and normalise with the ImageNet mean and std.

Frame sampling modes. The model sees a window of `num_frames * frame_stride` source frames (official geometry: 16
frames, stride 4, 64 frames = 2.56 s at the official 25 fps), and its spectrogram holds 2.56 s of audio: every mode
takes frames from one such window, and the audio of the window's time span (the official rule: from the first
sampled frame to one stride past the last, architecture.md §11.3).

- `"center"` (default): the centred window, frames `start, start + stride, ...`; a clip shorter than one window is
  read at the stride from its start and padded with its last strided frame (as the official test segments are).
  Deterministic: one clip per video for inference.
- `"uniform"`: for clips of at most one window, `num_frames` indices spread evenly over the whole clip (first and
  last frame included, no padding: for very short clips); a longer clip takes the centred window as `"center"` does
  (a warning says so), since frames spread further would have no audio in the spectrogram.
- `"sliding"`: every window of the clip, starting every `window_hop` source frames (default half a window, 32), plus
  one window ending at the last frame when the hop does not land there; a clip shorter than one window gives one
  padded window, as in `"center"`. The processors return all windows of all videos stacked, with their time spans.
- `"train"`: the official fine-tuning train/validation sampling: a random window of `num_frames * frame_stride`
  frames, `num_frames` indices spread over it; shorter clips are read at the stride and padded with their last frame.
- `"test"`: the official test segments: every `frame_stride`-th frame (padded with the last one to at least
  `num_frames`), segment `k` of `num_test_segments` starts at `k * (n_indices - num_frames) / (num_test_segments - 1)`.

Frame folders and frame arrays carry no frame rate: their window times are computed at 25 fps (`DEFAULT_FRAME_RATE`,
the official datasets' rate).
"""

import contextlib
import contextvars
import ctypes
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import numpy as np
import torch
from huggingface_hub.dataclasses import validate_typed_dict
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import ChannelDimension, PILImageResampling
from transformers.processing_utils import VideosKwargs
from transformers.utils import TensorType, logging
from transformers.video_processing_utils import BaseVideoProcessor

from .errors_avfmae import AudioAlignmentError, describe_item
from .face_detection_avfmae import FaceDetector, crop_faces, get_face_detector
from .random_avfmae import RandomSource, as_numpy_random
from .video_decoding_avfmae import VideoSource, import_pil_image, open_video


logger = logging.get_logger(__name__)

SAMPLING_MODES = ("center", "uniform", "sliding", "train", "test")
# Frame rate assumed for frame folders and arrays, which carry none (the official datasets are 25 fps).
DEFAULT_FRAME_RATE = 25.0
FACE_ALIGNMENTS = ("landmarks", "box")
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass
class FrameSampling:
    """Frame indices of one clip and the frame span its audio covers.

    Attributes:
        indices (`np.ndarray` of shape `(num_frames,)`): sampled frame indices, int64.
        audio_start_frame (`int`), audio_end_frame (`int`): first and last frame of the audio span (official rule).
        total_frames (`int`): frames in the (constant-rate) video.
        padded (`bool`): the clip is shorter than the window and its last frame was repeated to fill it (official
            padding); `False` when the window lies inside the clip or (`"uniform"`) the frames are spread over it.
    """

    indices: np.ndarray
    audio_start_frame: int
    audio_end_frame: int
    total_frames: int
    padded: bool = False


def _random_integer(generator: RandomSource, low: int, high: int) -> int:
    """An integer in `[low, high)` (see [`~random_avfmae.as_numpy_random`] for `generator`)."""
    generator = as_numpy_random(generator)
    if isinstance(generator, np.random.RandomState):
        return int(generator.randint(low, high))
    return int(generator.integers(low, high))


def sample_frame_indices(
    total_frames: int,
    mode: str = "center",
    num_frames: int = 16,
    frame_stride: int = 4,
    test_segment: int = 0,
    num_test_segments: int = 2,
    generator: RandomSource = None,
) -> FrameSampling:
    """Sample the frame indices of one clip of a video with `total_frames` frames (see the module docstring for the
    modes; `"sliding"` gives several clips: [`sliding_window_samplings`]).

    `generator` drives the `"train"` mode: a `numpy.random.Generator`, a `numpy.random.RandomState` (the official code
    draws from numpy's global `RandomState`), an `int` seed (seeds a `RandomState`) or `None` (fresh entropy).
    """
    if total_frames < 1:
        raise ValueError(f"A clip needs at least one frame, got {total_frames}.")
    if mode not in SAMPLING_MODES:
        raise ValueError(f"Unknown sampling mode {mode!r}; choose one of {SAMPLING_MODES}.")
    if mode == "sliding":
        raise ValueError("The 'sliding' mode gives several clips per video; use `sliding_window_samplings`.")
    window = num_frames * frame_stride
    if mode == "uniform" and total_frames <= window:
        indices = np.floor(np.linspace(0, total_frames - 1, num_frames) + 0.5).astype(np.int64)
        return FrameSampling(indices, 0, total_frames - 1, total_frames)
    if mode in ("center", "uniform"):
        if mode == "uniform":
            logger.warning_once(
                f"sampling_mode='uniform' spreads frames over clips of at most {window} frames; longer clips take "
                f"their centred window of {window} frames (as 'center'), so that the audio covers the frames."
            )
        return strided_window(max((total_frames - window) // 2, 0), total_frames, num_frames, frame_stride)
    if mode == "train":
        if total_frames <= window:
            # Official short-clip rule: indices at about the stride, then the last frame repeated.
            spread = np.linspace(0, total_frames, num=total_frames // frame_stride)
            padding = np.full(num_frames - total_frames // frame_stride, float(total_frames))
            indices = np.clip(np.concatenate([spread, padding]), 0, total_frames - 1).astype(np.int64)
            padded = total_frames // frame_stride < num_frames
        else:
            end = _random_integer(generator, window, total_frames)
            start = end - window
            indices = np.clip(np.linspace(start, end, num=num_frames), start, end - 1).astype(np.int64)
            padded = False
        first = int(indices[0])
        return FrameSampling(indices, first, min(first + window, total_frames - 1), total_frames, padded)
    # mode == "test"
    if not 0 <= test_segment < num_test_segments:
        raise ValueError(f"test_segment must be in [0, {num_test_segments}), got {test_segment}.")
    strided = list(range(0, total_frames, frame_stride))
    padded = len(strided) < num_frames
    strided += [strided[-1]] * max(num_frames - len(strided), 0)
    step = (len(strided) - num_frames) / (num_test_segments - 1) if num_test_segments > 1 else 0.0
    start = int(test_segment * max(step, 0.0))
    indices = np.asarray(strided[start : start + num_frames], dtype=np.int64)
    last = strided[min(start + num_frames - 1, len(strided) - 1)]
    return FrameSampling(indices, strided[start], min(last + frame_stride, total_frames - 1), total_frames, padded)


def strided_window(start: int, total_frames: int, num_frames: int = 16, frame_stride: int = 4) -> FrameSampling:
    """The window of `num_frames` frames every `frame_stride` from `start`; frames past the clip's end are its last
    strided frame repeated (the official test padding). The audio spans the first frame to one stride past the last
    (at most the clip's last frame)."""
    strides_left = (total_frames - 1 - start) // frame_stride
    indices = start + frame_stride * np.minimum(np.arange(num_frames), strides_left).astype(np.int64)
    last = int(indices[-1])
    return FrameSampling(
        indices, start, min(last + frame_stride, total_frames - 1), total_frames, strides_left < num_frames - 1
    )


def default_window_hop(num_frames: int = 16, frame_stride: int = 4) -> int:
    """Half a window in source frames (32 for the official geometry)."""
    return max(num_frames * frame_stride // 2, 1)


def sliding_window_samplings(
    total_frames: int, num_frames: int = 16, frame_stride: int = 4, window_hop: int | None = None
) -> list[FrameSampling]:
    """Every window of a clip (the `"sliding"` mode): windows of `num_frames * frame_stride` frames starting every
    `window_hop` source frames (default [`default_window_hop`]), plus one ending at the clip's last frame when the
    hop does not land there. A clip of at most one window gives one window from frame 0 (padded when shorter)."""
    if total_frames < 1:
        raise ValueError(f"A clip needs at least one frame, got {total_frames}.")
    window_hop = default_window_hop(num_frames, frame_stride) if window_hop is None else window_hop
    if isinstance(window_hop, bool) or not isinstance(window_hop, (int, np.integer)) or window_hop <= 0:
        raise ValueError(f"window_hop must be a positive number of source frames, got {window_hop!r}.")
    window = num_frames * frame_stride
    starts = list(range(0, max(total_frames - window, 0) + 1, int(window_hop)))
    if starts[-1] < total_frames - window:
        starts.append(total_frames - window)
    return [strided_window(start, total_frames, num_frames, frame_stride) for start in starts]


def audio_sample_range(
    start_frame: int,
    end_frame: int,
    total_frames: int,
    total_samples: int,
    sampling_rate: int = 16000,
    whole_file_seconds: float = 2.56,
    min_samples: int = 1024,
    index: int | None = None,
    name: object = None,
) -> tuple[int, int]:
    """Audio samples `[start, end)` matching frames `start_frame..end_frame` (official fine-tuning rule).

    A frame's relative time is `i / (total_frames - 1)` (0 for a one-frame clip), mapped to sample
    `int(t * total_samples)`, whatever the frame rate. A slice of at most `min_samples` samples is replaced by the
    whole track when the track is shorter than `whole_file_seconds` (the audio length the model takes); otherwise
    [`AudioAlignmentError`] is raised. (The official loader also rejects tracks of 1024 samples or fewer; here any
    track of at least one fbank window is used.)
    """

    def relative_time(frame: int) -> float:
        return 0 if total_frames == 1 else frame / (total_frames - 1.0)

    start = int(relative_time(start_frame) * total_samples)
    end = int(relative_time(end_frame) * total_samples)
    if end - start <= min_samples:
        if total_samples < whole_file_seconds * sampling_rate:
            return 0, total_samples
        raise AudioAlignmentError(
            f"the audio slice for frames {start_frame}..{end_frame} of {total_frames} has only {end - start} "
            f"samples (at most {min_samples}), and the {total_samples / sampling_rate:.2f} s track is too long to be "
            f"used whole; the audio does not cover the video.",
            index,
            name,
        )
    return start, end


def constant_rate_frame_map(timestamps: np.ndarray | None, tolerance: float = 0.5) -> np.ndarray | None:
    """For a variable-frame-rate video, the frame shown at each tick of a constant-rate timeline with the same
    number of frames and the same span; `None` when the frame intervals are regular (all within `tolerance` times
    the median interval) or unknown."""
    if timestamps is None or len(timestamps) < 3:
        return None
    intervals = np.diff(timestamps)
    median = float(np.median(intervals))
    if median <= 0 or np.all(np.abs(intervals - median) <= tolerance * median):
        return None
    ticks = np.linspace(timestamps[0], timestamps[-1], len(timestamps))
    return np.clip(np.searchsorted(timestamps, ticks + 1e-9, side="right") - 1, 0, len(timestamps) - 1)


class AVFMAEVideoProcessorKwargs(VideosKwargs, total=False):
    """transformers' video-processor options plus AVF-MAE++'s own (see [`AVFMAEVideoProcessor`])."""

    frame_stride: int
    sampling_mode: str
    window_hop: int | None
    num_test_segments: int
    do_face_crop: bool | None
    face_detector: Any
    face_alignment: str
    face_crop_size: int
    smooth_face_track: bool
    video_backend: str | None


# Keys that saved configurations carry besides the options.
SERIALISATION_KEYS = {"video_processor_type", "image_processor_type", "processor_class", "auto_map"}
# Arguments that transformers' loaders (pipelines among them) hand to `from_pretrained` for every component: they
# describe how the model is loaded, not the processor, so they are not processor options.
MODEL_LOADING_KEYS = {"dtype", "torch_dtype", "code_revision", "device_map", "_from_pipeline", "_from_auto"}


@dataclass
class ProcessedClip:
    """One processed clip: `pixel_values` `(num_frames, 3, height, width)`, its [`FrameSampling`], whether a face
    was found (`None` when face cropping was off), the opened source (for its audio) and the clip's time span in
    seconds (`window_start` at its first frame, `window_end` one window later, at most the video's end)."""

    pixel_values: torch.Tensor
    sampling: FrameSampling
    face_found: bool | None
    source: VideoSource
    window_start: float = 0.0
    window_end: float = 0.0


def frame_rate_of(source: VideoSource) -> float:
    """Frames per second of a source's constant-rate timeline: from its timestamps when it has them (also right for
    variable-rate videos put on a constant rate), else its declared rate, else `DEFAULT_FRAME_RATE` (frame folders
    and arrays)."""
    timestamps = source.timestamps
    if timestamps is not None and len(timestamps) > 1 and timestamps[-1] > timestamps[0]:
        return (len(timestamps) - 1) / float(timestamps[-1] - timestamps[0])
    return float(source.fps or DEFAULT_FRAME_RATE)


class AVFMAEVideoProcessor(BaseVideoProcessor):
    r"""
    Video processor of AVF-MAE++: samples, face-crops, resizes and normalises 16 frames per clip.

    A transformers video processor (`BaseVideoProcessor`, loaded by `AutoVideoProcessor`, saved as
    `video_preprocessor_config.json`). Every option below can be given to the constructor, to `from_pretrained` (which
    overrides the saved value) or to the call (for that call only); an unknown option raises `TypeError`, a value it
    cannot honour raises `ValueError`.

    Args:
        num_frames (`int`, defaults to 16): frames per clip.
        frame_stride (`int`, defaults to 4): distance between sampled frames (the official `sampling_rate`).
        sampling_mode (`str`, defaults to `"center"`): `"center"`, `"uniform"`, `"sliding"`, `"train"` or `"test"`
            (module docstring).
        window_hop (`int`, *optional*): start-to-start distance of the `"sliding"` windows in source frames; default
            half a window (32 frames for the official geometry).
        num_test_segments (`int`, defaults to 2): segments per video in the `"test"` mode (official: 2).
        do_resize (`bool`, defaults to `True`): resize every frame to `size`.
        size (`dict[str, int]`, defaults to `{"height": 160, "width": 160}`): `{"height", "width"}` resizes to exactly
            that size without keeping the aspect ratio (the official evaluation); `{"shortest_edge": n}` keeps it.
        resample (`PILImageResampling`, defaults to `BILINEAR`): PIL's resampling filter (the official one).
        do_center_crop (`bool`, defaults to `False`), crop_size (`dict[str, int]`, *optional*): crop the centre
            `crop_size` of each resized frame.
        do_rescale (`bool`, defaults to `True`), rescale_factor (`float`, defaults to `1 / 255`): scale pixels.
        do_normalize (`bool`, defaults to `True`), image_mean (`list[float]`, defaults to ImageNet's
            `[0.485, 0.456, 0.406]`), image_std (`list[float]`, defaults to `[0.229, 0.224, 0.225]`): normalise.
        do_convert_rgb (`bool`, defaults to `True`): frames become RGB (grey repeated, alpha dropped); the model takes
            RGB, so `False` raises.
        input_data_format (`str`, *optional*): `"channels_last"` or `"channels_first"` for array and tensor videos;
            by default the layout is told by the axis holding 1-4 channels.
        device (`str`, *optional*): device of the returned tensors.
        do_face_crop (`bool`, *optional*): crop and align the face before resizing. `None` (default) crops faces in
            encoded videos (paths, bytes, file objects) and not in frame folders or frame arrays, which are taken to
            be face crops already (the official datasets' frames are OpenFace-aligned faces).
        face_detector (`str` or [`FaceDetector`], defaults to `"mtcnn"`): `"mtcnn"`, `"haar"` or a detector instance
            (an instance is used but cannot be saved; its class name is stored).
        face_alignment (`str`, defaults to `"landmarks"`): `"landmarks"` aligns the 5 landmarks to OpenFace's
            `-simalign` template (similarity transform, removes roll); `"box"` uses the box rule.
        face_crop_size (`int`, defaults to 256): side of the aligned face crop before the resize (OpenFace's
            `-simsize 256` in the official data preparation).
        smooth_face_track (`bool`, defaults to `True`): follow one face and smooth its crop over time.
        video_backend (`str`, *optional*): `"pyav"` (default) or `"decord"` (optional dependency) for encoded videos;
            a file decord cannot read is read with PyAV (with a warning).

    `do_sample_frames=False` takes every frame of each video as it is, unsampled (videos of the same length batch;
    the audio is the whole track). transformers' options that do not fit the model's clip geometry raise when set:
    `fps`, `video_metadata`, `return_metadata=True`, `do_pad=True`, a `data_format` other than channels first.

    Output of `__call__`: [`BatchFeature`] with `pixel_values` `(num_clips, num_frames, 3, height, width)` float32
    (one clip per video, or one per window in the `"sliding"` mode, see [`preprocess`]) and, when face cropping ran
    for at least one video, `face_found` `(num_clips,)` bool: `False` where no face was detected in any sampled frame
    and the central square of each frame was used instead (a warning is logged); `True` otherwise.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = AVFMAEVideoProcessorKwargs

    # an int `size` is the shortest edge, as in VideoMAE
    default_to_square = False
    num_frames = 16
    frame_stride = 4
    sampling_mode = "center"
    window_hop = None
    num_test_segments = 2
    do_resize = True
    size = {"height": 160, "width": 160}
    resample = PILImageResampling.BILINEAR
    do_center_crop = False
    crop_size = None
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = list(IMAGENET_DEFAULT_MEAN)
    image_std = list(IMAGENET_DEFAULT_STD)
    do_convert_rgb = True
    do_sample_frames = True
    do_face_crop = None
    face_detector = "mtcnn"
    face_alignment = "landmarks"
    face_crop_size = 256
    smooth_face_track = True
    video_backend = None

    def __init__(self, **kwargs: Unpack[AVFMAEVideoProcessorKwargs]):
        unknown = sorted(set(kwargs) - set(self.valid_kwargs.__annotations__) - SERIALISATION_KEYS)
        if unknown:
            raise TypeError(f"AVFMAEVideoProcessor got unknown arguments {unknown}.")
        for key in ("video_processor_type", "image_processor_type"):
            kwargs.pop(key, None)
        detector = kwargs.get("face_detector")
        if isinstance(detector, FaceDetector):
            kwargs["face_detector"] = type(detector).__name__
        super().__init__(**kwargs)
        self._face_detector_instance = detector if isinstance(detector, FaceDetector) else None
        self.resolve_options()  # a setting that cannot be honoured raises now, not at the first call

    @classmethod
    def from_dict(cls, video_processor_dict: dict, **kwargs):
        """As transformers' `from_dict`, but an argument that is not an option raises instead of being dropped."""
        kwargs.pop("use_fast", None)  # AutoVideoProcessor's choice between implementations: there is one
        for key in MODEL_LOADING_KEYS:
            kwargs.pop(key, None)
        unknown = sorted(set(kwargs) - set(cls.valid_kwargs.__annotations__) - {"return_unused_kwargs"})
        if unknown and not kwargs.get("return_unused_kwargs"):
            raise TypeError(f"AVFMAEVideoProcessor got unknown arguments {unknown}.")
        return super().from_dict(video_processor_dict, **kwargs)

    def to_dict(self) -> dict:
        output = super().to_dict()
        for key in [key for key in output if key.startswith("_")]:
            del output[key]
        return output

    def get_face_detector(self, face_detector: "str | FaceDetector | None" = None) -> FaceDetector:
        """The detector instance for `face_detector` (default: this processor's, built on first use and kept)."""
        if isinstance(face_detector, FaceDetector):
            return face_detector
        if face_detector is not None and face_detector != self.face_detector:
            return get_face_detector(face_detector)
        if self._face_detector_instance is None:
            self._face_detector_instance = get_face_detector(self.face_detector)
        return self._face_detector_instance

    def resolve_options(self, **kwargs) -> dict:
        """The options of one call: `kwargs` (given, not `None`) over this processor's settings, checked.

        Raises `TypeError` for a name that is not an option and `ValueError` for a value that cannot be honoured.
        """
        valid = self.valid_kwargs.__annotations__
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise TypeError(f"AVFMAEVideoProcessor got unknown arguments {unknown}; the options are {sorted(valid)}.")
        validate_typed_dict(self.valid_kwargs, kwargs)
        options = {key: getattr(self, key, None) for key in valid}
        options.update({key: value for key, value in kwargs.items() if value is not None})
        options = self._standardize_kwargs(**options)
        if options["sampling_mode"] not in SAMPLING_MODES:
            raise ValueError(f"Unknown sampling_mode {options['sampling_mode']!r}; choose one of {SAMPLING_MODES}.")
        if options["face_alignment"] not in FACE_ALIGNMENTS:
            raise ValueError(f"Unknown face_alignment {options['face_alignment']!r}; choose one of {FACE_ALIGNMENTS}.")
        unsupported = {
            "do_convert_rgb": options["do_convert_rgb"] is False,
            "fps": options["fps"] is not None,
            "video_metadata": options["video_metadata"] is not None,
            "return_metadata": bool(options["return_metadata"]),
            "do_pad": bool(options["do_pad"]),
            "data_format": options["data_format"] not in (None, "channels_first", ChannelDimension.FIRST),
            "input_data_format": options["input_data_format"]
            not in (None, "channels_first", "channels_last", ChannelDimension.FIRST, ChannelDimension.LAST),
        }
        if any(unsupported.values()):
            names = {key: options[key] for key, bad in unsupported.items() if bad}
            raise ValueError(
                f"AVFMAEVideoProcessor cannot honour {names}: it takes RGB clips of `num_frames` frames sampled with "
                f"`sampling_mode`, channels first."
            )
        size, crop_size = options["size"], options["crop_size"]
        if options["do_resize"] and not (size is not None and ((size.height and size.width) or size.shortest_edge)):
            raise ValueError(f"size must be {{'height', 'width'}} or {{'shortest_edge'}}, got {size}.")
        if options["do_center_crop"] and not (crop_size is not None and crop_size.height and crop_size.width):
            raise ValueError(f"do_center_crop needs crop_size {{'height', 'width'}}, got {crop_size}.")
        try:
            options["resample"] = import_pil_image().Resampling(int(options["resample"]))
        except (TypeError, ValueError) as error:
            raise ValueError(f"resample must be a PIL resampling filter, got {options['resample']!r}.") from error
        return options

    def output_size(self, options: dict | None = None) -> tuple[int, int] | None:
        """`(height, width)` of the output frames, or `None` when it depends on the input (a `shortest_edge` size
        without a crop, or no resize)."""
        options = options or self.resolve_options()
        if options["do_center_crop"]:
            return options["crop_size"].height, options["crop_size"].width
        if options["do_resize"] and options["size"].height and options["size"].width:
            return options["size"].height, options["size"].width
        return None

    def transform_frames(
        self, frames: Sequence[np.ndarray], out: torch.Tensor | None = None, options: dict | None = None
    ) -> torch.Tensor:
        """Resize (PIL, to `size`), centre-crop, rescale and normalise RGB uint8 frames, as `options` (see
        [`resolve_options`]; default: this processor's settings) say.

        Args:
            frames: `(height, width, 3)` uint8 RGB frames.
            out (`torch.Tensor`, *optional*): float32 tensor of the output shape to write into (e.g. a slice of a
                batch), which saves a copy.

        Returns:
            `torch.Tensor` of shape `(len(frames), 3, height, width)`, float32.
        """
        options = options or self.resolve_options()
        image_module = import_pil_image()
        frames = [self._resize_and_crop(frame, options, image_module) for frame in frames]
        if len({frame.shape for frame in frames}) > 1:
            raise ValueError(
                "The frames of a clip have different sizes after resizing; pass size={'height': ..., 'width': ...} or "
                "a crop_size."
            )
        clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
        if out is None:
            out = torch.empty(clip.shape, dtype=torch.float32)
        out.copy_(clip)
        # rescale and normalise as one multiply-add per pixel: x * factor / std - mean / std
        factor = float(options["rescale_factor"]) if options["do_rescale"] else 1.0
        if not options["do_normalize"]:
            return out.mul_(factor)
        mean = torch.tensor(np.broadcast_to(options["image_mean"], 3), dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(np.broadcast_to(options["image_std"], 3), dtype=torch.float64).view(1, 3, 1, 1)
        return out.mul_((factor / std).float()).add_((-mean / std).float())

    @staticmethod
    def _resize_and_crop(frame: np.ndarray, options: dict, image_module) -> np.ndarray:
        if options["do_resize"]:
            size, (height, width) = options["size"], frame.shape[:2]
            if size.height and size.width:
                target = (size.width, size.height)
            else:  # shortest edge, aspect ratio kept
                short, long = sorted((height, width))
                long = int(size.shortest_edge * long / short)
                target = (long, size.shortest_edge) if width >= height else (size.shortest_edge, long)
            if frame.shape[1::-1] != target:
                frame = np.asarray(image_module.fromarray(frame).resize(target, options["resample"]))
        if options["do_center_crop"]:
            crop, (height, width) = options["crop_size"], frame.shape[:2]
            if crop.height > height or crop.width > width:
                raise ValueError(f"crop_size {dict(crop)} is larger than the {width}x{height} frame.")
            top, left = (height - crop.height) // 2, (width - crop.width) // 2
            frame = frame[top : top + crop.height, left : left + crop.width]
        return frame

    def allocate(self, num_clips: int, options: dict | None = None) -> torch.Tensor | None:
        """An empty `pixel_values` tensor `(num_clips, num_frames, 3, height, width)`, float32 (see
        [`new_output_tensor`]), or `None` when the frame size depends on the input (see [`output_size`])."""
        options = options or self.resolve_options()
        size = self.output_size(options)
        if size is None or not options["do_sample_frames"]:
            return None
        return new_output_tensor(num_clips, options["num_frames"], 3, *size)

    def stack_clips(self, clips: list["ProcessedClip"], options: dict) -> torch.Tensor:
        """The clips' `pixel_values` in one tensor (clips of different frame sizes raise)."""
        shapes = {tuple(clip.pixel_values.shape) for clip in clips}
        if len(shapes) > 1:
            raise ValueError(
                f"The clips have different shapes {sorted(shapes)} and cannot be batched; pass size={{'height': ..., "
                f"'width': ...}} or a crop_size."
            )
        pixel_values = new_output_tensor(len(clips), *shapes.pop())
        for row, clip in enumerate(clips):
            pixel_values[row].copy_(clip.pixel_values)
        return pixel_values

    def sample(
        self, total_frames: int, test_segment: int = 0, generator: RandomSource = None, options: dict | None = None
    ) -> list[FrameSampling]:
        """The clips to take from a video of `total_frames` frames: one, or every window in the `"sliding"` mode."""
        options = options or self.resolve_options()
        if not options["do_sample_frames"]:
            return [FrameSampling(np.arange(total_frames), 0, total_frames - 1, total_frames)]
        if options["sampling_mode"] == "sliding":
            return sliding_window_samplings(
                total_frames, options["num_frames"], options["frame_stride"], options["window_hop"]
            )
        return [
            sample_frame_indices(
                total_frames,
                mode=options["sampling_mode"],
                num_frames=options["num_frames"],
                frame_stride=options["frame_stride"],
                test_segment=test_segment,
                num_test_segments=options["num_test_segments"],
                generator=generator,
            )
        ]

    def process_source(
        self,
        source: VideoSource,
        test_segment: int = 0,
        generator: RandomSource = None,
        out: torch.Tensor | None = None,
        options: dict | None = None,
        frame_sampler: "Callable[[int], FrameSampling] | None" = None,
        frame_transform: "Callable[[list[np.ndarray]], list[np.ndarray]] | None" = None,
    ) -> list[ProcessedClip]:
        """Sample, face-crop and transform the clips of one opened video (one clip, or every window in the
        `"sliding"` mode) with `options` (see [`resolve_options`]; default: this processor's settings); with `out`
        (a tensor of shape `(num_frames, 3, height, width)`), a single clip is written into it.

        `frame_sampler` (total frames -> [`FrameSampling`]) replaces the sampling mode with one clip, and
        `frame_transform` gets the sampled (face-cropped) uint8 frames of each clip before the resize and
        normalisation: the hooks of the training augmentations (`augmentation_avfmae`)."""
        options = options or self.resolve_options()
        item = describe_item(source.index, source.name)
        frame_map = constant_rate_frame_map(source.timestamps)
        if frame_map is not None:
            logger.warning(
                f"{item}: variable frame rate; frames are taken at {len(frame_map)} evenly spaced times over the "
                f"clip (each showing the frame on screen at that time) before sampling and audio alignment."
            )
        total_frames = len(frame_map) if frame_map is not None else source.num_frames
        if frame_sampler is not None:
            samplings = [frame_sampler(total_frames)]
        else:
            samplings = self.sample(total_frames, test_segment, generator, options)
        if out is not None and len(samplings) != 1:
            raise ValueError("`out` takes one clip; the 'sliding' mode gives one per window.")
        do_face_crop = options["do_face_crop"]
        if do_face_crop is None:
            do_face_crop = source.is_encoded
        fps = frame_rate_of(source)
        window = options["num_frames"] * options["frame_stride"]
        # one read for all windows: a decoder goes through the file once
        indices = np.concatenate([sampling.indices for sampling in samplings])
        all_frames = source.read_frames(frame_map[indices] if frame_map is not None else indices)
        clips = []
        for number, sampling in enumerate(samplings):
            frames = all_frames[number * len(sampling.indices) : (number + 1) * len(sampling.indices)]
            face_found = None
            if do_face_crop:
                result = crop_faces(
                    frames,
                    self.get_face_detector(options["face_detector"]),
                    size=options["face_crop_size"],
                    use_landmarks=options["face_alignment"] == "landmarks",
                    smooth=options["smooth_face_track"],
                )
                frames, face_found = result.crops, result.face_found
                if not face_found:
                    logger.warning(
                        f"{item}: no face found in the sampled frames; using the central square of each frame."
                    )
            if frame_transform is not None:
                frames = frame_transform(list(frames))
            start = int(sampling.indices[0])
            clips.append(
                ProcessedClip(
                    self.transform_frames(frames, out, options),
                    sampling,
                    face_found,
                    source,
                    window_start=start / fps,
                    window_end=min(start + window, total_frames) / fps,
                )
            )
        return clips

    def process_video(
        self,
        video: object,
        index: int | None = None,
        test_segment: int = 0,
        generator: RandomSource = None,
        out: torch.Tensor | None = None,
        options: dict | None = None,
        frame_sampler: "Callable[[int], FrameSampling] | None" = None,
        frame_transform: "Callable[[list[np.ndarray]], list[np.ndarray]] | None" = None,
    ) -> list[ProcessedClip]:
        """Open one video input (see [`open_video`]) and process its clips (see [`process_source`], also for
        `frame_sampler` and `frame_transform`); the source stays open for its audio (close it with
        `clips[0].source.close()`)."""
        options = options or self.resolve_options()
        source = open_video(
            video, index=index, backend=options["video_backend"], input_data_format=options["input_data_format"]
        )
        try:
            return self.process_source(source, test_segment, generator, out, options, frame_sampler, frame_transform)
        except BaseException:
            source.close()
            raise

    def preprocess(
        self,
        videos: object,
        test_segment: int = 0,
        generator: RandomSource = None,
        return_tensors: str | TensorType | None = None,
        frame_sampler: "Callable[[int], FrameSampling] | None" = None,
        frame_transform: "Callable[[list[np.ndarray]], list[np.ndarray]] | None" = None,
        **kwargs: Unpack[AVFMAEVideoProcessorKwargs],
    ) -> BatchFeature:
        """Process one video or a list of videos.

        Args:
            videos: one video or a list. A video is a path (file or frame folder), bytes, a binary file object, a
                `(T, H, W[, C])` or `(T, C, H, W)` array or tensor (uint8, or float in [0, 1]; see
                [`~video_decoding_avfmae.FrameArraySource`]), or a list of frames (arrays, tensors or PIL images).
            test_segment (`int`, defaults to 0): segment index in the `"test"` mode.
            generator (*optional*): randomness of the `"train"` mode (see [`sample_frame_indices`]); one generator
                serves the whole batch in order.
            return_tensors (`str`, *optional*): `"pt"` or `"np"`.
            frame_sampler, frame_transform (*optional*): hooks of the training augmentations (see
                [`process_source`]).
            kwargs: any option of the class (`sampling_mode`, `window_hop`, `size`, `do_normalize`, `image_mean`,
                `do_face_crop`, ...), for this call only.

        Returns:
            [`BatchFeature`] with `pixel_values` `(num_clips, num_frames, 3, height, width)`: one clip per video, or
            in the `"sliding"` mode every window of every video in order, with `window_start` and `window_end`
            (seconds, float32), `video_index` (int64: the input each window comes from) and `window_padded` (bool:
            the video is shorter than one window, which was padded). `face_found` (bool, one per clip) when face
            cropping ran.
        """
        options = self.resolve_options(**kwargs)
        generator = as_numpy_random(generator) if generator is not None else None
        videos = split_videos(videos)
        sliding = options["sampling_mode"] == "sliding"
        pixel_values = None if sliding else self.allocate(len(videos), options)
        clips = []
        for index, video in enumerate(videos):
            out = None if pixel_values is None else pixel_values[index]
            video_clips = self.process_video(
                video, index, test_segment, generator, out, options, frame_sampler, frame_transform
            )
            video_clips[0].source.close()
            clips.extend(video_clips)
        if pixel_values is None:
            pixel_values = self.stack_clips(clips, options)
        outputs = batch_feature(clip_outputs(pixel_values, clips, sliding), return_tensors)
        return outputs.to(options["device"]) if options["device"] is not None else outputs

    def __call__(self, videos: object, **kwargs) -> BatchFeature:
        return self.preprocess(videos, **kwargs)


def clip_outputs(pixel_values: torch.Tensor, clips: list[ProcessedClip], sliding: bool) -> dict:
    """The outputs that describe processed clips: `pixel_values`, `face_found` when face cropping ran for any clip,
    and in the `"sliding"` mode each window's `window_start`, `window_end`, `video_index` and `window_padded`."""
    data = {"pixel_values": pixel_values}
    if any(clip.face_found is not None for clip in clips):
        data["face_found"] = torch.tensor([clip.face_found is not False for clip in clips])
    if sliding:
        data["window_start"] = torch.tensor([clip.window_start for clip in clips], dtype=torch.float32)
        data["window_end"] = torch.tensor([clip.window_end for clip in clips], dtype=torch.float32)
        data["video_index"] = torch.tensor([clip.source.index for clip in clips], dtype=torch.int64)
        data["window_padded"] = torch.tensor([clip.sampling.padded for clip in clips])
    return data


# Whether `new_output_tensor` allocates in shared memory inside a `DataLoader` worker; see `outputs_to_collate`.
_SHARED_OUTPUTS_IN_WORKERS = contextvars.ContextVar("avfmae_shared_outputs_in_workers", default=True)


def new_output_tensor(*shape: int) -> torch.Tensor:
    """An uninitialised float32 tensor. Inside a torch `DataLoader` worker it is allocated in shared memory, as
    torch's own `default_collate` does for its batches, so that handing it to the main process copies nothing
    (except within [`outputs_to_collate`])."""
    if _SHARED_OUTPUTS_IN_WORKERS.get() and torch.utils.data.get_worker_info() is not None:
        try:
            storage = torch.UntypedStorage._new_shared(math.prod(shape) * 4)
            return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)
        except (AttributeError, RuntimeError, TypeError):  # a torch without this allocator: a plain tensor
            pass
    return torch.empty(shape)


@contextlib.contextmanager
def outputs_to_collate():
    """Processor outputs made in this block are dataset items that a collator stacks into a batch: they stay in the
    worker's ordinary memory. The batch is what travels to the main process (the collator puts it in shared memory);
    an item in shared memory as well would be a fresh mapping whose every page faults in, only to be copied (8 ms for
    a base-size clip on the 2-core machine of `benchmarks/README.md`, a third of reading the clip). Inside a
    `DataLoader` worker, the first call also lets the C allocator keep freed memory for the next items (see
    `reuse_freed_memory`)."""
    if torch.utils.data.get_worker_info() is not None:
        reuse_freed_memory()
    token = _SHARED_OUTPUTS_IN_WORKERS.set(False)
    try:
        yield
    finally:
        _SHARED_OUTPUTS_IN_WORKERS.reset(token)


# glibc `mallopt` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the reusable heap; up to twice it stays there once freed.
_REUSED_BLOCK_BYTES = 64 * 2**20


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc's malloc serve blocks up to 64 MiB from its heap and keep up to 128 MiB of freed memory, once per
    process. Each item a data-loading worker makes allocates the same few-MB buffers; by default glibc maps such
    blocks fresh from the system and unmaps them when freed, so every item pays a page fault per 4 KiB page again.
    Returns whether the setting applied (`False` where the C library is not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _REUSED_BLOCK_BYTES)
            and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _REUSED_BLOCK_BYTES)
        )
    except (OSError, AttributeError):
        return False


def batch_feature(data: dict, return_tensors: str | TensorType | None) -> BatchFeature:
    """A `BatchFeature` of torch tensors for `return_tensors="pt"`, of numpy arrays otherwise (the tensors are
    kept as they are for "pt", so shared-memory outputs stay shared)."""
    if return_tensors is not None and TensorType(return_tensors) == TensorType.PYTORCH:
        return BatchFeature(data)
    return BatchFeature({key: value.numpy() for key, value in data.items()}, tensor_type=return_tensors)


def split_videos(videos: object) -> list:
    """A list of videos from one video or a batch.

    A list is a batch unless its elements are single frames (2-D/3-D arrays or tensors, or PIL images), in which case
    it is one video given as a list of frames. A 5-D array or tensor is a batch of `(T, H, W, C)` videos.
    """
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
        return list(videos)
    if isinstance(videos, (list, tuple)):
        if len(videos) == 0:
            raise ValueError("The batch of videos is empty.")
        if all(_is_single_frame(video) for video in videos):
            return [list(videos)]
        return list(videos)
    return [videos]


def _is_single_frame(value: object) -> bool:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim == 2 or (value.ndim == 3 and value.shape[-1] in (1, 2, 3, 4) and value.shape[0] > 4)
    return type(value).__module__.startswith("PIL.")


__all__ = [
    "AVFMAEVideoProcessor",
    "FrameSampling",
    "ProcessedClip",
    "SAMPLING_MODES",
    "DEFAULT_FRAME_RATE",
    "audio_sample_range",
    "batch_feature",
    "clip_outputs",
    "constant_rate_frame_map",
    "default_window_hop",
    "frame_rate_of",
    "new_output_tensor",
    "outputs_to_collate",
    "reuse_freed_memory",
    "sample_frame_indices",
    "sliding_window_samplings",
    "split_videos",
    "strided_window",
]
