# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Shared pytest fixtures.

Processor media (fixture names start with `processor_`): small videos written once per test session with PyAV's
bundled FFmpeg from public-domain images in the scikit-image wheel (`tests/media/synthetic.py`); nothing is
downloaded.

Every test runs offline: nothing may reach the Hub (pushes go to a replaced API object, loading reads local folders).
"""

import os


# before anything imports huggingface_hub, which reads it once
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.media import synthetic  # noqa: E402


FRAME_RATE = 25
AUDIO_RATE = 16000


@pytest.fixture(scope="session")
def processor_media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("processor_media")


@pytest.fixture(scope="session")
def processor_face_clip(processor_media_dir):
    """3 s, 25 fps, 640x360: the astronaut's face (about 120 px) moving slowly, with a 16 kHz mono voice-like track.
    Returns `(path, face_boxes)` with the face box of every frame."""
    frames, boxes = synthetic.talking_face_frames(num_frames=75, face_size=120)
    audio = synthetic.speech_like_audio(3.0, AUDIO_RATE)
    path = synthetic.write_video(processor_media_dir / "face_640x360.mp4", frames, FRAME_RATE, audio, AUDIO_RATE)
    return path, boxes


@pytest.fixture(scope="session")
def processor_cropped_clip(processor_media_dir):
    """3 s, 25 fps, 160x160 face crops (already framed), with audio."""
    frames, _ = synthetic.talking_face_frames(num_frames=75, height=160, width=160, face_size=110)
    audio = synthetic.speech_like_audio(3.0, AUDIO_RATE, seed=1)
    return synthetic.write_video(processor_media_dir / "cropped_160.mp4", frames, FRAME_RATE, audio, AUDIO_RATE)


def _index_clip(directory, name, num_frames, fps, with_audio=True, timestamps=None, **kwargs):
    frames = synthetic.index_frames(num_frames)
    duration = num_frames / fps if timestamps is None else float(timestamps[-1]) + 1 / fps
    audio = synthetic.speech_like_audio(duration, AUDIO_RATE, seed=num_frames) if with_audio else None
    return synthetic.write_video(
        directory / name, frames, fps, audio, AUDIO_RATE, timestamps=timestamps, crf=0, **kwargs
    )


@pytest.fixture(scope="session")
def processor_index_clips(processor_media_dir):
    """Small clips whose frame `i` is a flat grey of level `10 + 2 i` (see `synthetic.frame_index_of`), with audio:
    `{"25fps": 100 frames at 25 fps, "30fps": 90 at 30, "50fps": 150 at 50, "short": 40 at 25}`."""
    specs = {"25fps": (100, 25), "30fps": (90, 30), "50fps": (150, 50), "short": (40, 25)}
    return {
        key: _index_clip(processor_media_dir, f"index_{key}.mp4", num_frames, fps)
        for key, (num_frames, fps) in specs.items()
    }


@pytest.fixture(scope="session")
def processor_vfr_clip(processor_media_dir):
    """Variable frame rate: 60 index frames, 20 ms apart for the first 30, then 60 ms apart; with audio.
    Returns `(path, timestamps)`."""
    intervals = np.where(np.arange(60) < 30, 0.02, 0.06)
    timestamps = np.concatenate([[0.0], np.cumsum(intervals[:-1])])
    return _index_clip(processor_media_dir, "index_vfr.mp4", 60, 25, timestamps=timestamps), timestamps


@pytest.fixture(scope="session")
def processor_no_audio_clip(processor_media_dir):
    """1.6 s, 25 fps index clip without an audio stream."""
    return _index_clip(processor_media_dir, "index_no_audio.mp4", 40, 25, with_audio=False)


@pytest.fixture(scope="session")
def processor_face_free_clip(processor_media_dir):
    """1 s, 25 fps, 640x360 of face-free backgrounds (coffee, brick, grass, gravel) with audio."""
    frames = np.stack([synthetic.background(kind=i // 7) for i in range(25)])
    audio = synthetic.speech_like_audio(1.0, AUDIO_RATE)
    return synthetic.write_video(processor_media_dir / "face_free.mp4", frames, FRAME_RATE, audio, AUDIO_RATE)


@pytest.fixture(scope="session")
def processor_frame_folder(processor_media_dir):
    """40 face-crop frames as `000001.jpg` ... (the official datasets' layout)."""
    frames, _ = synthetic.talking_face_frames(num_frames=40, height=160, width=160, face_size=110)
    return synthetic.write_frame_folder(processor_media_dir / "frames", frames)


@pytest.fixture(scope="session")
def processor_wav_file(processor_media_dir):
    """A 2 s, 44.1 kHz stereo audio file (AAC in an .m4a container)."""
    import av

    path = os.fspath(processor_media_dir / "voice_44k_stereo.m4a")
    left = synthetic.speech_like_audio(2.0, 44100, seed=3)
    samples = np.stack([left, 0.5 * left])
    with av.open(path, mode="w") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "stereo"
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout="stereo"
            )
            frame.sample_rate = 44100
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
