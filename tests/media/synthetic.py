# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Test media made at run time from public-domain images in the scikit-image wheel: face scenes, video files (PyAV's
bundled FFmpeg: H.264 + AAC) and synthetic audio. Used by the tests (`tests/conftest.py`) and the benchmarks."""

import fractions
import math
import os
from dataclasses import dataclass

import av
import cv2
import numpy as np
import skimage.data


# Face boxes (x1, y1, x2, y2) of the two photos, as MTCNN boxes them (face-detection.md §5).
ASTRONAUT_FACE_BOX = (182.0, 60.0, 268.0, 174.0)
CAMERA_FACE_BOX = (198.0, 118.0, 254.0, 196.0)


def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def camera() -> np.ndarray:
    return np.repeat(skimage.data.camera()[:, :, None], 3, axis=2)


def lfw_faces(count: int = 100) -> list[np.ndarray]:
    """The first `count` (at most 100) face crops of `skimage.data.lfw_subset()` as 25x25 RGB uint8 images."""
    faces = skimage.data.lfw_subset()[: min(count, 100)]
    return [np.repeat((face * 255).round().astype(np.uint8)[:, :, None], 3, axis=2) for face in faces]


def background(height: int = 360, width: int = 640, kind: int = 0) -> np.ndarray:
    """A face-free RGB background: scikit-image textures and photos without people (coffee, brick, grass, gravel)."""
    sources = [
        lambda: skimage.data.coffee(),
        lambda: np.repeat(skimage.data.brick()[:, :, None], 3, axis=2),
        lambda: np.repeat(skimage.data.grass()[:, :, None], 3, axis=2),
        lambda: np.repeat(skimage.data.gravel()[:, :, None], 3, axis=2),
    ]
    image = sources[kind % len(sources)]()
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


@dataclass
class FaceScene:
    """A frame with one pasted face. `face_box` is the face's axis-aligned box `(x1, y1, x2, y2)` in the frame
    (a square of the face size around its centre), `face_size` its size in pixels, `angle` its tilt in degrees."""

    frame: np.ndarray
    face_box: np.ndarray
    face_size: float
    angle: float


def paste_face(
    scene: np.ndarray,
    image: np.ndarray,
    face_box: tuple[float, float, float, float],
    face_size: float,
    center: tuple[float, float],
    angle: float = 0.0,
    context: float = 1.0,
) -> FaceScene:
    """Paste the face of `image` (inside `face_box`) into `scene` at `center`, scaled so that the face is `face_size`
    pixels (geometric mean of width and height) and tilted by `angle` degrees (counter-clockwise), with `context`
    times the face size of surrounding image on each side (clipped to the image) and a feathered edge."""
    x1, y1, x2, y2 = face_box
    source_size = math.sqrt((x2 - x1) * (y2 - y1))
    scale = face_size / source_size
    source_center = ((x1 + x2) / 2, (y1 + y2) / 2)
    matrix = cv2.getRotationMatrix2D(source_center, angle, scale)
    matrix[:, 2] += np.asarray(center) - np.asarray(source_center)
    height, width = scene.shape[:2]
    warped = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    mask = np.zeros(image.shape[:2], np.float32)
    margin = context * source_size
    mx1, my1 = int(max(x1 - margin, 0)), int(max(y1 - margin, 0))
    mx2, my2 = int(min(x2 + margin, image.shape[1])), int(min(y2 + margin, image.shape[0]))
    mask[my1:my2, mx1:mx2] = 1.0
    mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR)
    feather = max(int(face_size * 0.08) | 1, 3)
    mask = cv2.GaussianBlur(mask, (feather, feather), 0)[:, :, None]
    frame = (warped * mask + scene * (1 - mask)).round().astype(np.uint8)
    half = face_size / 2
    box = np.array([center[0] - half, center[1] - half, center[0] + half, center[1] + half])
    return FaceScene(frame=frame, face_box=box, face_size=face_size, angle=angle)


def face_scenes(
    sizes: tuple[float, ...] = (40, 80, 120, 200),
    angles: tuple[float, ...] = (-20, 0, 20),
    num_lfw: int = 4,
    height: int = 360,
    width: int = 640,
) -> list[FaceScene]:
    """Real faces (astronaut, cameraman, `num_lfw` LFW faces) pasted at every size and tilt into face-free
    640x360 backgrounds, at positions that vary with the case."""
    sources = [(astronaut(), ASTRONAUT_FACE_BOX, 1.0), (camera(), CAMERA_FACE_BOX, 1.0)]
    sources += [(face, (0.0, 0.0, 25.0, 25.0), 0.0) for face in lfw_faces(num_lfw)]
    rng = np.random.default_rng(0)
    scenes = []
    for source_index, (image, box, context) in enumerate(sources):
        for size in sizes:
            for angle in angles:
                margin = min(size * 0.7, height / 2 - 1)
                center = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
                scene = background(height, width, kind=len(scenes) + source_index)
                scenes.append(paste_face(scene, image, box, size, center, angle, context))
    return scenes


def talking_face_frames(
    num_frames: int = 75, height: int = 360, width: int = 640, face_size: float = 120.0, fps: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of the astronaut's face moving slowly (a few pixels, a few degrees) over a background.

    Returns:
        frames `(num_frames, height, width, 3)` uint8 and the face boxes `(num_frames, 4)`.
    """
    scene = background(height, width, kind=0)
    frames, boxes = [], []
    for i in range(num_frames):
        phase = 2 * math.pi * i / fps
        center = (width / 2 + 10 * math.sin(phase), height / 2 + 5 * math.cos(phase))
        pasted = paste_face(scene, astronaut(), ASTRONAUT_FACE_BOX, face_size, center, 4 * math.sin(phase / 2))
        frames.append(pasted.frame)
        boxes.append(pasted.face_box)
    return np.stack(frames), np.stack(boxes)


def speech_like_audio(duration: float, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A synthetic voice-like mono signal (a 120-180 Hz harmonic series with formant-like weights, syllable-rate
    on/off envelope, a little noise), float32 in [-1, 1], shape `(num_samples,)`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * sampling_rate))) / sampling_rate
    pitch = 150 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    voice = sum(np.sin(k * phase) / k * (1.5 if 4 <= k <= 6 else 1.0) for k in range(1, 16))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    signal = 0.15 * voice * envelope + 0.005 * rng.standard_normal(t.shape)
    return np.clip(signal, -1, 1).astype(np.float32)


FLASH_INDEX_BITS = 10  # frames up to 1024


def flash_beep_media(
    num_frames: int, flashes: list[tuple[int, int]], fps: float = 25.0, sampling_rate: int = 16000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames with white flashes and a silent track with a 1 kHz beep during exactly the flashes.

    `flashes` lists `(first_frame, num_flash_frames)`; frame `i` shows during `[i / fps, (i + 1) / fps)`, and the beep
    sounds during the same times. Each 16x40 frame shows its own index in its top half (10 bars, bit k white or black,
    see `flash_frame_index_of`) and the flash in its bottom half (level 240 during a flash, else 15).

    Returns `(frames, audio, bright)`: frames `(num_frames, 16, 40, 3)` uint8, audio
    `(round(num_frames / fps * sampling_rate),)` float32, `bright` `(num_frames,)` bool.
    """
    bright = np.zeros(num_frames, dtype=bool)
    for first, length in flashes:
        bright[first : first + length] = True
    bits = (np.arange(num_frames)[:, None] >> np.arange(FLASH_INDEX_BITS)[None, :]) & 1
    frames = np.zeros((num_frames, 16, 4 * FLASH_INDEX_BITS, 3), dtype=np.uint8)
    frames[:, :8] = (np.repeat(bits, 4, axis=1) * 255)[:, None, :, None]
    frames[:, 8:] = np.where(bright, 240, 15)[:, None, None, None]
    num_samples = int(round(num_frames / fps * sampling_rate))
    t = np.arange(num_samples) / sampling_rate
    frame_of_sample = np.minimum((t * fps).astype(np.int64), num_frames - 1)
    audio = np.where(bright[frame_of_sample], 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
    return frames, audio, bright


def flash_frame_index_of(frame: np.ndarray) -> tuple[int, bool]:
    """The index and the flash state shown by a (decoded) `flash_beep_media` frame `(16, 40, 3)`."""
    frame = np.asarray(frame, np.float64)
    bars = frame[:8].mean(axis=(0, 2)).reshape(FLASH_INDEX_BITS, -1).mean(axis=1)
    return int(sum(1 << k for k in range(FLASH_INDEX_BITS) if bars[k] > 127)), bool(frame[8:].mean() > 127)


def index_frames(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames that show their own index as 8 vertical bars (bit k of the index: white bar k, else black), so that a
    decoded frame tells which frame it is (see `frame_index_of`); up to 256 frames."""
    bits = (np.arange(num_frames)[:, None] >> np.arange(8)[None, :]) & 1  # (T, 8), bit 0 = leftmost bar
    columns = np.repeat(bits, width // 8, axis=1) * 255  # (T, width)
    return np.broadcast_to(columns[:, None, :, None], (num_frames, height, width, 3)).astype(np.uint8).copy()


def frame_index_of(frame: np.ndarray) -> int:
    frame = np.asarray(frame, np.float64)
    bars = frame.mean(axis=(0, 2)).reshape(8, -1).mean(axis=1)
    return int(sum(1 << k for k in range(8) if bars[k] > 127))


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
    timestamps: np.ndarray | None = None,
    pixel_format: str = "yuv420p",
    crf: int = 18,
    container_options: dict | None = None,
) -> str:
    """Write frames `(T, H, W, 3)` uint8 (and optional mono or `(channels, samples)` float audio) to an H.264/AAC
    file. `timestamps` (seconds, one per frame) makes a variable-frame-rate video."""
    path = os.fspath(path)
    with av.open(path, mode="w", options=container_options or {}) as container:
        rate = fractions.Fraction(fps).limit_denominator(1001)
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = pixel_format
        video.options = {"crf": str(crf)}
        if timestamps is not None:
            video.codec_context.time_base = fractions.Fraction(1, 1000)
            video.time_base = fractions.Fraction(1, 1000)
        audio_stream = None
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
            audio_stream = container.add_stream("aac", rate=sampling_rate)
            audio_stream.layout = "mono" if audio.shape[0] == 1 else "stereo"
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if timestamps is not None:
                video_frame.pts = int(round(timestamps[i] * 1000))
                video_frame.time_base = fractions.Fraction(1, 1000)
            container.mux(video.encode(video_frame))
        container.mux(video.encode())
        if audio_stream is not None:
            chunk = 1024
            for start in range(0, audio.shape[1], chunk):
                samples = np.ascontiguousarray(audio[:, start : start + chunk])
                audio_frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=audio_stream.layout.name)
                audio_frame.sample_rate = sampling_rate
                audio_frame.pts = start
                audio_frame.time_base = fractions.Fraction(1, sampling_rate)
                container.mux(audio_stream.encode(audio_frame))
            container.mux(audio_stream.encode())
    return path


def write_frame_folder(folder: str | os.PathLike, frames: np.ndarray, extension: str = "jpg") -> str:
    """Write frames as `000001.jpg`, `000002.jpg`, ... (the official datasets' layout)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f"{i + 1:06d}.{extension}"), quality=95)
    return os.fspath(folder)


__all__ = [
    "ASTRONAUT_FACE_BOX",
    "CAMERA_FACE_BOX",
    "FaceScene",
    "astronaut",
    "background",
    "camera",
    "face_scenes",
    "frame_index_of",
    "index_frames",
    "lfw_faces",
    "paste_face",
    "speech_like_audio",
    "talking_face_frames",
    "write_frame_folder",
    "write_video",
]
