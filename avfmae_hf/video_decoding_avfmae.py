# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Reading frames and audio from videos, frame folders and arrays, behind one small interface.

[`VideoSource`] is what the processors see: a frame count, per-frame timestamps, random access to RGB frames and the
whole audio track. [`open_video`] picks the implementation:

- an encoded video (path, bytes or file object): [`ContainerVideoSource`]. Frames come from PyAV (the default:
  FFmpeg wheels for every platform, measured faster, benchmarks/README.md) or, on request, decord (the official
  code's reader, an optional dependency: `pip install decord`, x86-64 only). Both return identical frames. decord
  rejects some valid files (it hands back 6-channel frames for some 16/24/48 px wide videos): a file decord cannot
  read is read with PyAV instead, with a warning. Metadata and audio always come from PyAV: decord's audio reader
  needs its error text parsed to tell "no audio stream" from damage, prints noise at interpreter exit and is slower.
- a folder of frame images, sorted lexicographically (the official datasets' format): [`FrameFolderSource`].
- frames in memory (a `(T, H, W, C)` or `(T, C, H, W)` array or tensor, uint8 or float in [0, 1], or a list of
  frames): [`FrameArraySource`].

Decoders can hand back wrong data without raising (a short batch, a wrong frame size, timestamps that go backwards,
an audio track much shorter than declared). Every source checks what it returns and raises the typed errors of
`errors_avfmae` with its own explanation; a decoder's message is only ever chained as the cause.

decord, av and PIL are imported on use inside `try` blocks, so that this module can be uploaded as Hub code without
making them requirements of loading it.
"""

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from transformers.utils import logging

from .errors_avfmae import (
    CorruptVideoError,
    DecodedDataMismatchError,
    EmptyInputError,
    InputNotFoundError,
    InvalidFramesError,
    MissingAudioError,
    UnusableAudioError,
    ZeroLengthVideoError,
    describe_item,
)


logger = logging.get_logger(__name__)

VIDEO_BACKENDS = ("decord", "pyav")
FRAME_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CHANNEL_COUNTS = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA
# Float frames may overshoot [0, 1] by rounding (e.g. after a resize); values further out are not [0, 1] frames.
FLOAT_RANGE_TOLERANCE = 1e-3

# Tolerances for checking decoded data against the container's own description.
FRAME_COUNT_TOLERANCE = 0.05  # share of the declared frame count (at least 2 frames)
AUDIO_DURATION_TOLERANCE = 0.10  # share of the declared audio duration (at least 0.2 s)


def import_av():
    """The PyAV module (imported on use, inside `try` so that Hub code loading does not require it)."""
    try:
        import av
    except ImportError as error:
        raise ImportError("Reading encoded videos and audio files needs PyAV: `pip install av`.") from error
    return av


def import_decord():
    """The decord module, or `None` where it is not installed (e.g. ARM machines, which it has no wheels for)."""
    try:
        import decord
    except ImportError:
        return None
    return decord


def import_pil_image():
    """PIL's `Image` module."""
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("Reading frame images needs Pillow: `pip install Pillow`.") from error
    return Image


def is_decord_available() -> bool:
    return import_decord() is not None


def default_video_backend() -> str:
    """`"pyav"`: it reads every valid file, on every platform, and decodes faster than decord here
    (benchmarks/README.md); `"decord"` is used only when asked for."""
    return "pyav"


class VideoSource:
    """An opened video: frame count, timestamps, random access to frames, and the audio track.

    Attributes:
        num_frames (`int`): frames in presentation order (always at least 1).
        timestamps (`np.ndarray` of shape `(num_frames,)`): presentation time of every frame in seconds, starting at
            0, or `None` when the source has no time (frames in memory or in a folder).
        fps (`float`, *optional*): the declared or average frame rate.
        is_encoded (`bool`): `True` for encoded videos (raw camera frames), `False` for frames that were prepared
            beforehand (folders, arrays); the video processor crops faces by default only in the first case.
        index, name: the batch position and a printable name of the input, for error messages.
    """

    num_frames: int = 0
    timestamps: np.ndarray | None = None
    fps: float | None = None
    is_encoded: bool = False

    def __init__(self, index: int | None = None, name: object = None):
        self.index = index
        self.name = name

    def error(self, error_class: type, problem: str) -> Exception:
        return error_class(problem, self.index, self.name)

    def read_frames(self, indices: Sequence[int]) -> list[np.ndarray]:
        """RGB frames at `indices` (repeats allowed), each a `(height, width, 3)` uint8 array."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_frames):
            raise IndexError(f"frame indices must be in [0, {self.num_frames}), got {indices.min()}..{indices.max()}")
        unique, inverse = np.unique(indices, return_inverse=True)
        frames = self._read_unique_frames(unique)
        if len(frames) != len(unique):
            raise self.error(
                DecodedDataMismatchError,
                f"the decoder returned {len(frames)} frames for {len(unique)} requested frame indices; the file is "
                f"probably damaged.",
            )
        frames = [self._check_frame(frame, int(i)) for frame, i in zip(frames, unique, strict=True)]
        return [frames[i] for i in inverse.reshape(-1)]

    def _read_unique_frames(self, indices: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _check_frame(self, frame: np.ndarray, frame_index: int) -> np.ndarray:
        return to_rgb_uint8(frame, self, f"frame {frame_index}")

    @property
    def has_audio(self) -> bool:
        return False

    def read_audio(self) -> tuple[np.ndarray, int]:
        """The whole audio track as `(channels, samples)` float32 at its own sampling rate, and that rate."""
        raise self.error(MissingAudioError, "the input has no audio track and no separate audio was given.")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def to_rgb_uint8(frame: object, source: VideoSource, what: str) -> np.ndarray:
    """Convert one frame to a contiguous `(height, width, 3)` uint8 array.

    Accepts `(H, W)` grey, `(H, W, 1)` grey, `(H, W, 2)` grey + alpha, `(H, W, 3)` RGB and `(H, W, 4)` RGBA arrays
    or tensors, and PIL images of any mode. Floating-point frames are taken to be in [0, 1] (what torchvision's
    `ToTensor` and most float pipelines produce) and become `round(x * 255)`; floats outside [0, 1] raise, as they
    would be a silent guess. Alpha is dropped without compositing, as PIL's `convert("RGB")` (the official frame
    loader) does. Anything else raises [`InvalidFramesError`].
    """
    if _is_pil_image(frame):
        frame = np.asarray(frame.convert("RGB"))
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu()
        frame = (frame.float() if frame.is_floating_point() else frame).numpy()
    if not isinstance(frame, np.ndarray):
        raise source.error(InvalidFramesError, f"{what} is a {type(frame).__name__}, not an image array.")
    if np.issubdtype(frame.dtype, np.floating):
        frame = float_frames_to_uint8(frame, source, what)
    if frame.dtype != np.uint8:
        raise source.error(
            InvalidFramesError,
            f"{what} has dtype {frame.dtype}; frames must be uint8 in [0, 255] or floating point in [0, 1].",
        )
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 2, 3, 4):
        raise source.error(
            InvalidFramesError,
            f"{what} has shape {tuple(frame.shape)}; expected (height, width) or (height, width, channels) with 1 "
            f"(grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels, channels last.",
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise source.error(InvalidFramesError, f"{what} has an empty size {frame.shape[1]}x{frame.shape[0]}.")
    channels = frame.shape[2]
    if channels in (1, 2):
        frame = np.repeat(frame[:, :, :1], 3, axis=2)
    elif channels == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)


def float_frames_to_uint8(frames: np.ndarray, source: VideoSource, what: str) -> np.ndarray:
    """`round(frames * 255)` as uint8 for floating-point frames in [0, 1]; other values raise
    [`InvalidFramesError`]."""
    if frames.size and not np.all(np.isfinite(frames)):
        raise source.error(InvalidFramesError, f"{what} holds NaN or infinite values.")
    low, high = (float(frames.min()), float(frames.max())) if frames.size else (0.0, 1.0)
    if low < -FLOAT_RANGE_TOLERANCE or high > 1.0 + FLOAT_RANGE_TOLERANCE:
        raise source.error(
            InvalidFramesError,
            f"{what} is floating point with values in [{low:g}, {high:g}]; float frames must be in [0, 1] (pass uint8 "
            f"frames for values in [0, 255]).",
        )
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)


def channel_axis_of_video(shape: tuple, source: VideoSource) -> int:
    """The channel axis of a `(T, H, W, C)` or `(T, C, H, W)` video of this shape: 3 or 1.

    A channel axis holds 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) values. When both candidate axes could
    (e.g. `(T, 3, 4, 3)`), channels last is assumed, the layout of decord, PyAV and numpy image arrays, and the
    choice is logged; when neither can, [`InvalidFramesError`] is raised.
    """
    last, second = shape[3] in CHANNEL_COUNTS, shape[1] in CHANNEL_COUNTS
    if last and second:
        logger.warning(
            f"{describe_item(source.index, source.name)}: a video of shape {tuple(shape)} could be (T, H, W, C) "
            f"or (T, C, H, W); assuming (T, H, W, C) (channels last). Transpose it to (T, H, W, C) to be sure."
        )
    if last:
        return 3
    if second:
        return 1
    raise source.error(
        InvalidFramesError,
        f"a video array of shape {tuple(shape)} has no channel axis: expected (frames, height, width, channels) or "
        f"(frames, channels, height, width) with 1, 2, 3 or 4 channels.",
    )


def _is_pil_image(value: object) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "convert")


class FrameArraySource(VideoSource):
    """Frames held in memory: a `(T, H, W, C)`, `(T, C, H, W)` or `(T, H, W)` array or tensor (uint8, or float in
    [0, 1]), or a list of frames (arrays, tensors or PIL images, channels last; sizes may differ between frames).

    The layout of a 4-D video is `input_data_format` (`"channels_first"` or `"channels_last"`) when given, else told
    by which axis holds 1 to 4 channels (see [`channel_axis_of_video`]): the `(T, C, H, W)` tensors of torchvision
    and torchcodec decoders work as they come.
    """

    def __init__(
        self, frames: object, index: int | None = None, name: object = None, input_data_format: str | None = None
    ):
        super().__init__(index, name if name is not None else "frames")
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu()
            frames = (frames.float() if frames.is_floating_point() else frames).numpy()
        if isinstance(frames, np.ndarray):
            if frames.ndim not in (3, 4):
                raise self.error(
                    InvalidFramesError,
                    f"a frame array must have shape (frames, height, width[, channels]) or (frames, channels, height, "
                    f"width), got {tuple(frames.shape)}.",
                )
            if frames.ndim == 4:
                channel_axis = {"channels_first": 1, "channels_last": 3}.get(str(input_data_format or ""))
                if channel_axis is None:
                    channel_axis = channel_axis_of_video(frames.shape, self)
                if channel_axis == 1:
                    frames = frames.transpose(0, 2, 3, 1)
            frames = list(frames)
        self.frames = list(frames)
        self.num_frames = len(self.frames)
        if self.num_frames == 0:
            raise self.error(ZeroLengthVideoError, "the frame array holds no frames.")

    def _read_unique_frames(self, indices: np.ndarray) -> list:
        return [self.frames[i] for i in indices]


class FrameFolderSource(VideoSource):
    """A folder of frame images (the official datasets' format), in lexicographic order of the file names."""

    def __init__(self, folder: str | os.PathLike, index: int | None = None):
        super().__init__(index, folder)
        names = sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.is_file() and entry.name.lower().endswith(FRAME_IMAGE_EXTENSIONS)
        )
        if not names:
            raise self.error(
                EmptyInputError, f"the folder contains no frame images ({', '.join(FRAME_IMAGE_EXTENSIONS)})."
            )
        self.paths = [os.path.join(folder, name) for name in names]
        self.num_frames = len(self.paths)

    def _read_unique_frames(self, indices: np.ndarray) -> list[np.ndarray]:
        image_module = import_pil_image()
        frames = []
        for i in indices:
            path = self.paths[i]
            try:
                with image_module.open(path) as image:
                    frames.append(np.asarray(image.convert("RGB")))
            except (image_module.UnidentifiedImageError, OSError, ValueError) as error:
                raise self.error(
                    CorruptVideoError, f"frame file {os.path.basename(path)!r} cannot be read as an image."
                ) from error
        return frames


class ContainerVideoSource(VideoSource):
    """An encoded video (mp4, mkv, avi, webm, ...) from a path, bytes or a file object.

    PyAV reads the container's description (streams, declared frame count, rate, durations) and the audio; the
    frames come from PyAV or decord. With PyAV, one demuxing pass keeps the compressed packets of both streams in
    memory and both are decoded from them (seeking back could lose the audio decoder's priming packet, which shifts
    the first AAC samples). When decord cannot open a file or decode its frames (it fails on some valid narrow
    videos), PyAV reads it instead, with a warning; a file PyAV cannot read either gets PyAV's typed error.

    Args:
        data (`str`, `os.PathLike` or `bytes`): the file path or its content.
        backend (`str`, *optional*): `"pyav"` (default) or `"decord"` for the frames.
        index, name: batch position and printable name for error messages.
        num_threads (`int`, defaults to 1): decoding threads per video (processors usually run in parallel workers).
    """

    is_encoded = True

    def __init__(
        self,
        data: str | os.PathLike | bytes,
        backend: str | None = None,
        index: int | None = None,
        name: object = None,
        num_threads: int = 1,
    ):
        super().__init__(index, name if name is not None else data if not isinstance(data, bytes) else None)
        backend = backend or default_video_backend()
        if backend not in VIDEO_BACKENDS:
            raise ValueError(f"Unknown video backend {backend!r}; choose one of {VIDEO_BACKENDS}.")
        if backend == "decord" and not is_decord_available():
            raise ImportError(
                "The decord backend was requested but decord cannot be imported: `pip install decord` (x86-64 only), "
                "or use backend='pyav' (the default)."
            )
        self.backend = backend
        self.data = data
        self.num_threads = num_threads
        self._container = None
        self._container_read = False
        self._decord_reader = None
        self._video_packets = None
        self._audio_packets = None
        self._audio = None
        try:
            self._probe()
            self._read_timestamps()
        except BaseException:
            self.close()
            raise

    def _open_container(self):
        """A freshly opened PyAV container (the previous one, if any, is closed)."""
        av = import_av()
        if self._container is not None:
            self._container.close()
        source = io.BytesIO(self.data) if isinstance(self.data, bytes) else os.fspath(self.data)
        try:
            self._container = av.open(source, mode="r")
        except (av.FFmpegError, ValueError, OSError) as error:
            raise self.error(
                CorruptVideoError,
                "the file cannot be opened as a video container (unknown format, random bytes or a truncated file).",
            ) from error
        self._container_read = False
        return self._container

    def _probe(self) -> None:
        """Read the container's description of its streams."""
        container = self._open_container()
        if container.format.name in TEXT_FORMATS:
            # FFmpeg renders any text file (a list, notes) as ANSI art rather than refusing it
            raise self.error(CorruptVideoError, "the file is text, not a video.")
        if not container.streams.video:
            raise self.error(ZeroLengthVideoError, "the container has no video stream.")
        video = container.streams.video[0]
        self.width = int(video.codec_context.width or 0)
        self.height = int(video.codec_context.height or 0)
        if self.width <= 0 or self.height <= 0:
            raise self.error(CorruptVideoError, "the video stream declares no frame size.")
        self.declared_num_frames = int(video.frames or 0)
        rate = video.average_rate or video.guessed_rate or video.base_rate
        self.fps = float(rate) if rate else None
        self._has_audio = bool(container.streams.audio)

    def _read_timestamps(self) -> None:
        if self.backend == "decord":
            try:
                self._read_timestamps_decord()
            except ZeroLengthVideoError:
                raise
            except CorruptVideoError:
                self._fall_back_to_pyav("cannot open the video stream")
        else:
            self._demux()
        num_frames = len(self.timestamps)
        if num_frames == 0:
            raise self.error(ZeroLengthVideoError, "the video stream holds no frames.")
        if not np.all(np.isfinite(self.timestamps)) or np.any(np.diff(self.timestamps) < 0):
            raise self.error(
                DecodedDataMismatchError,
                "the decoder returned frame timestamps that are not finite or go backwards; the file is probably "
                "damaged.",
            )
        if self.declared_num_frames > 0:
            allowed = max(2, FRAME_COUNT_TOLERANCE * self.declared_num_frames)
            if abs(num_frames - self.declared_num_frames) > allowed:
                raise self.error(
                    DecodedDataMismatchError,
                    f"the container declares {self.declared_num_frames} frames but the {self.backend} decoder finds "
                    f"{num_frames}; the file is probably damaged or truncated.",
                )
        self.num_frames = num_frames
        self.timestamps = self.timestamps - self.timestamps[0]

    def _read_timestamps_decord(self) -> None:
        decord = import_decord()
        source = io.BytesIO(self.data) if isinstance(self.data, bytes) else os.fspath(self.data)
        try:
            reader = decord.VideoReader(source, num_threads=self.num_threads)
            num_frames = len(reader)
            timestamps = reader.get_frame_timestamp(list(range(num_frames)))[:, 0] if num_frames else np.zeros(0)
        except Exception as error:  # decord raises its own DECORDError, RuntimeError or AssertionError
            if self._count_video_packets() == 0:
                raise self.error(ZeroLengthVideoError, "the video stream holds no frames.") from error
            raise self.error(
                CorruptVideoError, "decord cannot read the video stream; the file is damaged or truncated."
            ) from error
        self._decord_reader = reader
        self.timestamps = np.asarray(timestamps, dtype=np.float64)

    def _fall_back_to_pyav(self, problem: str) -> None:
        """Read the frames with PyAV from now on, because decord failed on this file."""
        logger.warning(
            f"{describe_item(self.index, self.name)}: decord {problem}; reading the file with PyAV instead."
        )
        self.backend = "pyav"
        self._decord_reader = None
        self._open_container()
        self._demux()

    def _count_video_packets(self) -> int:
        av = import_av()
        container = self._open_container()
        self._container_read = True
        try:
            return sum(packet.size > 0 for packet in container.demux(container.streams.video[0]))
        except (av.FFmpegError, ValueError, OSError):
            return -1

    def _demux(self) -> None:
        """One pass over the file, keeping the compressed packets of the first video and audio streams."""
        av = import_av()
        container = self._container
        video = container.streams.video[0]
        streams = [video] + ([container.streams.audio[0]] if self._has_audio else [])
        self._video_packets, self._audio_packets = [], []
        self._container_read = True
        try:
            for packet in container.demux(streams):
                if packet.size == 0:
                    continue  # end-of-stream marker
                if packet.stream.index == video.index:
                    self._video_packets.append(packet)
                else:
                    self._audio_packets.append(packet)
        except (av.FFmpegError, ValueError, OSError) as error:
            raise self.error(
                CorruptVideoError, "the container cannot be read to the end; the file is damaged or truncated."
            ) from error
        time_base = float(video.time_base) if video.time_base else 0.0
        pts = [packet.pts for packet in self._video_packets if packet.pts is not None]
        if len(pts) != len(self._video_packets):
            raise self.error(DecodedDataMismatchError, "some video packets carry no timestamp.")
        self.timestamps = np.sort(np.asarray(pts, dtype=np.float64)) * time_base

    def _read_unique_frames(self, indices: np.ndarray) -> list[np.ndarray]:
        if self.backend == "decord":
            try:
                batch = self._decord_reader.get_batch(indices.tolist()).asnumpy()
                problem = (
                    None if batch.ndim == 4 and batch.shape[-1] == 3 else f"returned frames of shape {batch.shape}"
                )
            except Exception as error:  # decord raises its own DECORDError, RuntimeError or IndexError
                problem = f"cannot decode the frames ({type(error).__name__})"
            if problem is None:
                return list(batch)
            num_frames = self.num_frames
            self._fall_back_to_pyav(problem)
            if len(self.timestamps) != num_frames:
                raise self.error(
                    DecodedDataMismatchError,
                    f"decord found {num_frames} frames but PyAV finds {len(self.timestamps)}; the file is probably "
                    f"damaged.",
                )
            self.timestamps = self.timestamps - self.timestamps[0]
        return self._read_frames_pyav(indices)

    def _read_frames_pyav(self, indices: np.ndarray) -> list[np.ndarray]:
        """Decode the kept packets up to the last wanted frame. Frames are identified by their timestamps, which lets
        the decoder skip frames that nothing asked for and no other frame refers to (FFmpeg's `skip_frame="NONREF"`;
        the frames that are decoded are unchanged). Without distinct timestamps every frame is decoded and counted."""
        av = import_av()
        codec = self._container.streams.video[0].codec_context
        if not codec.is_open:
            codec.thread_count = self.num_threads
        wanted = set(indices.tolist())
        pts = [packet.pts for packet in self._video_packets]
        index_of_pts = {value: position for position, value in enumerate(sorted(pts))}
        by_timestamp = len(index_of_pts) == len(pts)
        # One reformatter for all frames keeps its colour-conversion context: a new one per frame (what
        # `frame.to_ndarray(format=...)` does) costs more than the conversion itself.
        reformatter = av.video.reformatter.VideoReformatter()
        frames = {}
        position = -1
        try:
            for packet in [*self._video_packets, None]:
                if by_timestamp:
                    needed = packet is None or index_of_pts[packet.pts] in wanted
                    codec.skip_frame = "DEFAULT" if needed else "NONREF"
                for frame in codec.decode(packet):
                    position = index_of_pts.get(frame.pts, -1) if by_timestamp else position + 1
                    if position < 0:
                        raise self.error(
                            DecodedDataMismatchError,
                            f"the decoder returned a frame with timestamp {frame.pts}, which no packet has.",
                        )
                    if position in wanted:
                        frames[position] = reformatter.reformat(frame, format="rgb24").to_ndarray()
                if len(frames) == len(wanted):
                    break
        except (av.FFmpegError, ValueError, OSError) as error:
            raise self.error(
                CorruptVideoError, f"the frames after frame {position} cannot be decoded; the file is damaged."
            ) from error
        if len(frames) != len(wanted):
            missing = sorted(wanted - frames.keys())
            raise self.error(
                DecodedDataMismatchError,
                f"the container lists {self.num_frames} frames but frames {missing[:5]} could not be decoded; the "
                f"file is probably truncated.",
            )
        return [frames[i] for i in indices.tolist()]

    def _check_frame(self, frame: np.ndarray, frame_index: int) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            shape = getattr(frame, "shape", None)
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise self.error(
                DecodedDataMismatchError,
                f"the {self.backend} decoder returned frame {frame_index} with shape {shape} and dtype {dtype}, but "
                f"the stream declares {self.width}x{self.height} RGB frames.",
            )
        return frame

    @property
    def has_audio(self) -> bool:
        return self._has_audio

    def read_audio(self) -> tuple[np.ndarray, int]:
        if not self._has_audio:
            raise self.error(
                MissingAudioError,
                "the video has no audio stream; pass audio separately, or missing_audio='silence' to use silence.",
            )
        if self._audio is not None:
            return self._audio
        if self._audio_packets is None and self._container_read:
            self._open_container()
        stream = self._container.streams.audio[0]
        if self._audio_packets is not None:
            waveform, sampling_rate = decode_audio_packets(stream, self._audio_packets, self)
        else:
            self._container_read = True
            waveform, sampling_rate = decode_audio_stream(self._container, stream, self)
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        duration = waveform.shape[1] / sampling_rate
        if declared:
            allowed = max(0.2, AUDIO_DURATION_TOLERANCE * declared)
            if abs(duration - declared) > allowed:
                raise self.error(
                    DecodedDataMismatchError,
                    f"the audio stream declares {declared:.3f} s but the decoder returned {duration:.3f} s of audio; "
                    f"the file is probably damaged or truncated.",
                )
        self._audio = waveform, sampling_rate
        return self._audio

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._decord_reader = None
        self._video_packets = self._audio_packets = None


# FFmpeg demuxers that read text files as pictures.
TEXT_FORMATS = {"tty"}

# Scale of integer sample formats (PyAV names without the planar "p" suffix) to [-1, 1].
SAMPLE_FORMAT_SCALE = {"u8": 2.0**7, "s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63, "flt": 1.0, "dbl": 1.0}


def _audio_frame_to_planar(frame) -> np.ndarray | None:
    """`(channels, samples)` float32 from a decoded PyAV audio frame, or `None` for an unknown sample format."""
    name = frame.format.name
    base = name[:-1] if frame.format.is_planar else name
    if base not in SAMPLE_FORMAT_SCALE:
        return None
    samples = frame.to_ndarray()
    if not frame.format.is_planar:
        samples = samples.reshape(-1, len(frame.layout.channels)).T
    samples = samples.astype(np.float32, copy=False)
    if base == "u8":
        return (samples - 128.0) / SAMPLE_FORMAT_SCALE[base]
    if SAMPLE_FORMAT_SCALE[base] != 1.0:
        return samples / SAMPLE_FORMAT_SCALE[base]
    return samples


def decode_audio_stream(container, stream, source: VideoSource) -> tuple[np.ndarray, int]:
    """Decode a whole PyAV audio stream of a container that has not been read yet (no seeking) to planar float32
    `(channels, samples)` at its own rate."""
    av = import_av()
    try:
        frames = list(container.decode(stream))
    except (av.FFmpegError, ValueError, OSError) as error:
        raise source.error(
            UnusableAudioError, "the audio stream cannot be decoded; the file is damaged or truncated."
        ) from error
    return _frames_to_waveform(frames, stream, source)


def decode_audio_packets(stream, packets: list, source: VideoSource) -> tuple[np.ndarray, int]:
    """Decode demuxed audio packets of `stream` (then flush the decoder), like [`decode_audio_stream`]."""
    av = import_av()
    frames = []
    try:
        for packet in [*packets, None]:
            frames.extend(stream.codec_context.decode(packet))
    except (av.FFmpegError, ValueError, OSError) as error:
        raise source.error(
            UnusableAudioError, "the audio stream cannot be decoded; the file is damaged or truncated."
        ) from error
    return _frames_to_waveform(frames, stream, source)


def _frames_to_waveform(frames: list, stream, source: VideoSource) -> tuple[np.ndarray, int]:
    av = import_av()
    chunks = []
    resampler = None
    for frame in frames:
        samples = None if resampler is not None else _audio_frame_to_planar(frame)
        if samples is not None:
            chunks.append(samples)
            continue
        resampler = resampler or av.AudioResampler(format="fltp")
        chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
    if resampler is not None:
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    sampling_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    if sampling_rate <= 0:
        raise source.error(UnusableAudioError, "the audio stream declares no sampling rate.")
    if not chunks:
        raise source.error(UnusableAudioError, "the audio stream holds no samples.")
    channels = chunks[0].shape[0]
    if any(chunk.ndim != 2 or chunk.shape[0] != channels for chunk in chunks):
        raise source.error(
            DecodedDataMismatchError, "the decoder returned audio chunks with a changing channel count."
        )
    return np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32), sampling_rate


def load_audio_file(
    source: str | os.PathLike | bytes, index: int | None = None, name: object = None
) -> tuple[np.ndarray, int]:
    """Read the first audio stream of an audio file or a video container as `(channels, samples)` float32 and its
    sampling rate."""
    av = import_av()
    check_path(source, index)
    data = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    holder = VideoSource(index, name if name is not None else source if not isinstance(source, bytes) else None)
    try:
        container = av.open(data, mode="r")
    except (av.FFmpegError, ValueError, OSError) as error:
        raise holder.error(
            UnusableAudioError, "the file cannot be opened as an audio file or video container."
        ) from error
    with container:
        if not container.streams.audio:
            raise holder.error(MissingAudioError, "the file has no audio stream.")
        return decode_audio_stream(container, container.streams.audio[0], holder)


def check_path(source: object, index: int | None = None) -> None:
    """Raise [`InputNotFoundError`] or [`EmptyInputError`] for a missing path or an empty file / empty bytes."""
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise InputNotFoundError("no such file or folder.", index, source)
        if os.path.isfile(source) and os.path.getsize(source) == 0:
            raise EmptyInputError("the file is empty (0 bytes).", index, source)
    elif isinstance(source, (bytes, bytearray, memoryview)) and len(source) == 0:
        raise EmptyInputError("the video bytes are empty.", index, source)


def open_video(
    source: object,
    index: int | None = None,
    backend: str | None = None,
    num_threads: int = 1,
    input_data_format: str | None = None,
) -> VideoSource:
    """Open any supported video input.

    Args:
        source: a path to a video file or to a folder of frame images; the bytes of a video file; a binary file
            object; a `(T, H, W[, C])` or `(T, C, H, W)` array or tensor (uint8, or float in [0, 1]); or a list of
            frames (arrays, tensors, PIL images).
        index (`int`, *optional*): batch position, used in error messages.
        backend (`str`, *optional*): `"pyav"` (default) or `"decord"` for encoded videos.
        num_threads (`int`, defaults to 1): decoding threads per video.
        input_data_format (`str`, *optional*): `"channels_first"` or `"channels_last"` for 4-D frame arrays (see
            [`FrameArraySource`]).
    """
    if isinstance(source, (str, os.PathLike)):
        check_path(source, index)
        if os.path.isdir(source):
            return FrameFolderSource(source, index)
        return ContainerVideoSource(source, backend, index, num_threads=num_threads)
    if isinstance(source, (bytes, bytearray, memoryview)):
        check_path(source, index)
        return ContainerVideoSource(bytes(source), backend, index, name=source, num_threads=num_threads)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, bytes):
            raise InvalidFramesError("the file object must be opened in binary mode.", index, source)
        if not data:
            raise EmptyInputError("the file object is empty.", index, source)
        return ContainerVideoSource(data, backend, index, name=source, num_threads=num_threads)
    if isinstance(source, (np.ndarray, torch.Tensor, list, tuple)):
        return FrameArraySource(source, index, input_data_format=input_data_format)
    raise InvalidFramesError(
        f"unsupported video input of type {type(source).__name__}; pass a path, bytes, a file object, a frame "
        f"folder or an array of frames.",
        index,
    )


__all__ = [
    "ContainerVideoSource",
    "FrameArraySource",
    "FrameFolderSource",
    "VIDEO_BACKENDS",
    "VideoSource",
    "channel_axis_of_video",
    "check_path",
    "default_video_backend",
    "float_frames_to_uint8",
    "import_av",
    "import_decord",
    "import_pil_image",
    "is_decord_available",
    "load_audio_file",
    "open_video",
    "to_rgb_uint8",
]
