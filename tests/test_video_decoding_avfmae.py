# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Decoding behind one interface: decord and PyAV agree, every input kind works, bad input gets typed errors, and
wrong data handed back by a decoder is caught."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from avfmae_hf import (
    AVFMAEInputError,
    AVFMAEProcessor,
    AVFMAEVideoProcessor,
    CorruptVideoError,
    DecodedDataMismatchError,
    EmptyInputError,
    InputNotFoundError,
    InvalidFramesError,
    MissingAudioError,
    ZeroLengthVideoError,
)
from avfmae_hf import video_decoding_avfmae as decoding
from avfmae_hf.video_decoding_avfmae import ContainerVideoSource, load_audio_file, open_video
from tests.media import synthetic


# decord (optional) has no wheels for ARM machines; there PyAV alone serves (and is compared with itself).
BACKENDS = ["decord", "pyav"] if decoding.is_decord_available() else ["pyav"]


@pytest.mark.parametrize("clip", ["face", "index"])
def test_decord_and_pyav_give_identical_frames_and_timestamps(clip, processor_face_clip, processor_index_clips):
    path = processor_face_clip[0] if clip == "face" else processor_index_clips["30fps"]
    with open_video(path, backend=BACKENDS[0]) as by_decord, open_video(path, backend="pyav") as by_pyav:
        assert by_decord.num_frames == by_pyav.num_frames
        np.testing.assert_allclose(by_decord.timestamps, by_pyav.timestamps, atol=1e-6)
        indices = np.arange(by_decord.num_frames)
        frames_decord = np.stack(by_decord.read_frames(indices))
        frames_pyav = np.stack(by_pyav.read_frames(indices))
        np.testing.assert_array_equal(frames_decord, frames_pyav)
        np.testing.assert_array_equal(by_decord.read_audio()[0], by_pyav.read_audio()[0])


def test_frames_come_back_in_presentation_order_with_repeats(processor_index_clips):
    for backend in BACKENDS:
        with open_video(processor_index_clips["25fps"], backend=backend) as source:
            assert source.num_frames == 100 and source.fps == 25.0 and source.is_encoded
            indices = [99, 0, 50, 50, 7]
            assert [synthetic.frame_index_of(frame) for frame in source.read_frames(indices)] == indices


def test_pyav_is_the_default_and_decord_optional(monkeypatch, processor_index_clips):
    assert decoding.default_video_backend() == "pyav"
    with open_video(processor_index_clips["short"]) as source:
        assert source.backend == "pyav" and source.num_frames == 40
    monkeypatch.setattr(decoding, "import_decord", lambda: None)
    with open_video(processor_index_clips["short"]) as source:
        assert source.backend == "pyav" and source.num_frames == 40
    with pytest.raises(ImportError, match="pip install decord"):
        ContainerVideoSource(processor_index_clips["short"], backend="decord")


@pytest.fixture(scope="module")
def narrow_clips(tmp_path_factory):
    """Valid 48 px high videos 16, 24 and 48 px wide (decord hands back 6-channel frames for them), with audio."""
    directory = tmp_path_factory.mktemp("narrow")
    clips = {}
    for width in (16, 24, 48):
        frames = synthetic.index_frames(30, height=48, width=64)[:, :, :width]
        path = synthetic.write_video(
            directory / f"narrow_{width}.mp4", frames, 25, synthetic.speech_like_audio(1.2), 16000, crf=0
        )
        clips[width] = path, frames
    return clips


@pytest.mark.parametrize("width", [16, 24, 48])
def test_narrow_videos_decode_with_either_backend(narrow_clips, width, caplog):
    path, frames = narrow_clips[width]
    with open_video(path) as source:
        decoded = np.stack(source.read_frames(range(30)))
    assert decoded.shape == (30, 48, width, 3)
    np.testing.assert_allclose(decoded.astype(np.float64).mean(axis=(1, 2, 3)), frames.mean(axis=(1, 2, 3)), atol=3)
    for backend in BACKENDS:
        caplog.clear()
        with caplog.at_level("WARNING"), open_video(path, backend=backend, index=2) as source:
            np.testing.assert_array_equal(np.stack(source.read_frames(range(30))), decoded)
            assert source.backend == "pyav"  # decord fell back to PyAV for this file
        if backend == "decord":
            assert "item 2" in caplog.text and "reading the file with PyAV instead" in caplog.text
    inputs = AVFMAEProcessor(AVFMAEVideoProcessor(video_backend=BACKENDS[0]))(path, return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 16, 3, 160, 160) and inputs["audio_values"].shape == (1, 1, 256, 128)


def test_bytes_and_file_objects(processor_index_clips):
    path = processor_index_clips["short"]
    data = open(path, "rb").read()
    with open_video(path) as source:
        expected = np.stack(source.read_frames([0, 39]))
        expected_audio = source.read_audio()[0]
    for item in (data, bytearray(data), io.BytesIO(data), open(path, "rb")):
        with open_video(item) as source:
            np.testing.assert_array_equal(np.stack(source.read_frames([0, 39])), expected)
            np.testing.assert_array_equal(source.read_audio()[0], expected_audio)


def test_audio_is_read_whole_at_its_own_rate(processor_index_clips, processor_wav_file):
    with open_video(processor_index_clips["25fps"]) as source:
        waveform, rate = source.read_audio()
    assert rate == 16000 and waveform.shape[0] == 1 and abs(waveform.shape[1] / rate - 4.0) < 0.1
    waveform, rate = load_audio_file(processor_wav_file)
    assert rate == 44100 and waveform.shape[0] == 2 and abs(waveform.shape[1] / rate - 2.0) < 0.1
    # The right channel is the left at half amplitude (AAC is lossy: compare loudness and shape).
    assert abs(np.sqrt(np.mean(waveform[1] ** 2) / np.mean(waveform[0] ** 2)) - 0.5) < 0.05
    assert np.corrcoef(waveform[0], waveform[1])[0, 1] > 0.95


def test_frame_folder_is_read_in_lexicographic_order(tmp_path):
    frames = synthetic.index_frames(12)
    names = [f"{i}.png" for i in range(12)]  # lexicographic: 0, 1, 10, 11, 2, 3, ...
    for name, frame in zip(names, frames, strict=True):
        Image.fromarray(frame).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    with open_video(tmp_path) as source:
        assert source.num_frames == 12 and not source.is_encoded and source.timestamps is None
        order = [synthetic.frame_index_of(frame) for frame in source.read_frames(range(12))]
    assert order == [int(name[:-4]) for name in sorted(names)]


def test_frame_arrays_tensors_and_lists(processor_frame_folder):
    frames = synthetic.index_frames(5)
    for video in (frames, torch.from_numpy(frames), list(frames), [Image.fromarray(frame) for frame in frames]):
        with open_video(video) as source:
            assert source.num_frames == 5
            np.testing.assert_array_equal(np.stack(source.read_frames(range(5))), frames)


def test_channels_first_videos_and_float_frames():
    """(T, C, H, W) arrays and tensors (torchvision / torchcodec decoders) read as their (T, H, W, C) transposes;
    float frames in [0, 1] become round(x * 255)."""
    frames = np.random.default_rng(0).integers(0, 256, (5, 12, 10, 3), dtype=np.uint8)
    channels_first = frames.transpose(0, 3, 1, 2).copy()
    levels = np.array([0.0, 0.25, 0.5, 1.0], np.float32)
    float_frames = np.broadcast_to(levels[:, None, None, None], (4, 6, 7, 3)).copy()
    float_expected = np.broadcast_to(np.array([0, 64, 128, 255], np.uint8)[:, None, None, None], (4, 6, 7, 3))
    cases = {
        "uint8 (T, C, H, W) array": (channels_first, frames),
        "uint8 (T, C, H, W) tensor": (torch.from_numpy(channels_first), frames),
        "float (T, H, W, C) array": (float_frames, float_expected),
        "float (T, C, H, W) tensor": (torch.from_numpy(float_frames).permute(0, 3, 1, 2), float_expected),
        "bfloat16 (T, C, H, W) tensor": (
            torch.from_numpy(float_frames).permute(0, 3, 1, 2).bfloat16(),
            float_expected,
        ),
        "grey (T, 1, H, W)": (channels_first[:, :1], np.repeat(frames[..., :1], 3, axis=3)),
    }
    for name, (video, expected) in cases.items():
        with open_video(video) as source:
            np.testing.assert_array_equal(np.stack(source.read_frames(range(len(expected)))), expected, err_msg=name)


def test_ambiguous_layout_assumes_channels_last_and_says_so(caplog):
    # (T, 3, 4, 3): three 4x3 frames channels first, or 3x4 frames channels last; both axes could hold channels.
    video = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    with caplog.at_level("WARNING"):
        with open_video(video, index=4) as source:
            frames = np.stack(source.read_frames(range(2)))
    np.testing.assert_array_equal(frames, video)
    assert "item 4" in caplog.text and "assuming (T, H, W, C)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        open_video(np.zeros((2, 3, 8, 8), np.uint8)).close()
    assert "assuming" not in caplog.text


def test_grey_rgba_and_odd_sizes_are_converted():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 97, 121, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    conversions = {
        "grey (T, H, W)": (grey, np.repeat(grey[..., None], 3, axis=3)),
        "grey (T, H, W, 1)": (grey[..., None], np.repeat(grey[..., None], 3, axis=3)),
        "grey + alpha": (np.stack([grey, grey], axis=3), np.repeat(grey[..., None], 3, axis=3)),
        "RGBA": (np.concatenate([rgb, np.full_like(grey[..., None], 7)], axis=3), rgb),
    }
    for name, (video, expected) in conversions.items():
        with open_video(video) as source:
            frames = np.stack(source.read_frames(range(3)))
        np.testing.assert_array_equal(frames, expected, err_msg=name)
    pil_frames = [Image.fromarray(rgb[0]).convert(mode) for mode in ("L", "LA", "RGBA", "P", "1")]
    with open_video(pil_frames) as source:
        assert all(frame.shape == (97, 121, 3) for frame in source.read_frames(range(5)))


@pytest.mark.parametrize(
    ("video", "error", "words"),
    [
        (np.full((2, 8, 8, 3), 2.0, np.float32), InvalidFramesError, r"must be in \[0, 1\]"),
        (np.full((2, 8, 8, 3), np.nan, np.float32), InvalidFramesError, "NaN"),
        (np.zeros((2, 8, 8, 3), np.int64), InvalidFramesError, "uint8"),
        (np.zeros((2, 8, 8, 5), np.uint8), InvalidFramesError, "channels"),
        (np.zeros((8, 8), np.uint8), InvalidFramesError, "shape"),
        (np.zeros((0, 8, 8, 3), np.uint8), ZeroLengthVideoError, "no frames"),
        (np.zeros((2, 0, 8, 3), np.uint8), InvalidFramesError, "empty size"),
        (12345, InvalidFramesError, "unsupported"),
        (io.StringIO("text"), InvalidFramesError, "binary"),
    ],
)
def test_bad_frame_inputs(video, error, words):
    with pytest.raises(error, match=words) as raised:
        with open_video(video, index=3) as source:
            source.read_frames([0, 1])
    assert raised.value.index == 3 and "item 3" in str(raised.value)


def write_bad_file(directory, kind: str, source_clip: str) -> str:
    path = os.path.join(directory, f"{kind}.txt" if kind == "text" else f"{kind}.mp4")
    data = open(source_clip, "rb").read()
    if kind == "text":  # FFmpeg would render it as ANSI art
        data = b"hello, not a video\n" * 50
    elif kind == "random_bytes":
        data = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    elif kind == "truncated":  # moov atom at the end: cut it off
        data = data[: len(data) // 2]
    elif kind == "truncated_header":
        data = data[:2000]
    elif kind == "empty":
        data = b""
    with open(path, "wb") as file:
        file.write(data)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("empty", EmptyInputError),
        ("random_bytes", CorruptVideoError),
        ("text", CorruptVideoError),
        ("truncated", CorruptVideoError),
        ("truncated_header", CorruptVideoError),
    ],
)
def test_bad_files_raise_typed_errors(tmp_path, processor_index_clips, backend, kind, error):
    path = write_bad_file(tmp_path, kind, processor_index_clips["25fps"])
    with pytest.raises(error) as raised:
        with open_video(path, index=2, backend=backend) as source:
            source.read_frames(range(source.num_frames))
            source.read_audio()
    message = str(raised.value)
    assert message.startswith(f"item 2 ({path!r}):")
    # Our own explanation, not only the decoder's text (which, if any, is chained as the cause).
    assert any(words in message for words in ("empty", "cannot be opened", "damaged", "truncated", "not a video"))


def test_faststart_file_cut_in_the_middle(tmp_path, processor_index_clips):
    """With the index at the front, a cut file still opens; the missing data must not pass silently."""
    path = synthetic.write_video(
        tmp_path / "faststart.mp4",
        synthetic.index_frames(100),
        audio=synthetic.speech_like_audio(4.0),
        crf=0,
        container_options={"movflags": "faststart"},
    )
    data = open(path, "rb").read()
    cut = tmp_path / "faststart_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    for backend in BACKENDS:
        with pytest.raises(CorruptVideoError, match="damaged|truncated"):
            with open_video(cut, backend=backend) as source:
                source.read_frames(range(source.num_frames))
                source.read_audio()


def test_missing_path_and_empty_inputs(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such file"):
        open_video(tmp_path / "missing.mp4", index=0)
    with pytest.raises(EmptyInputError, match="empty"):
        open_video(b"")
    with pytest.raises(EmptyInputError, match="no frame images"):
        open_video(tmp_path)  # an empty folder
    with pytest.raises(EmptyInputError, match="empty"):
        open_video(io.BytesIO(b""))


def test_unreadable_frame_file_in_folder(tmp_path):
    Image.fromarray(synthetic.index_frames(1)[0]).save(tmp_path / "0001.jpg")
    (tmp_path / "0002.jpg").write_bytes(b"not a jpeg")
    with open_video(tmp_path, index=5) as source:
        with pytest.raises(CorruptVideoError, match="0002.jpg") as raised:
            source.read_frames([0, 1])
    assert raised.value.__cause__ is not None


def test_zero_length_video(tmp_path):
    import av

    path = os.fspath(tmp_path / "zero.mp4")
    with av.open(path, mode="w") as container:  # a valid mp4 in which the video track never received a frame
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
        container.mux(stream.encode())
    for backend in BACKENDS:
        with pytest.raises(ZeroLengthVideoError, match="item 0.*no video stream"):
            open_video(path, index=0, backend=backend)


def test_audio_only_file_is_not_a_video(processor_wav_file):
    with pytest.raises(ZeroLengthVideoError, match="no video stream"):
        open_video(processor_wav_file)


def test_video_without_audio_stream(processor_no_audio_clip):
    with open_video(processor_no_audio_clip, index=1) as source:
        assert not source.has_audio
        with pytest.raises(MissingAudioError, match="item 1.*no audio stream"):
            source.read_audio()
    with pytest.raises(MissingAudioError):
        load_audio_file(processor_no_audio_clip)


class LyingSource(ContainerVideoSource):
    """A container source whose decoder hands back wrong data without raising."""

    lie = None

    def _read_timestamps_decord(self):
        super()._read_timestamps_decord()
        self._lie_about_timestamps()

    def _demux(self):
        super()._demux()
        self._lie_about_timestamps()

    def _lie_about_timestamps(self):
        if self.lie == "count":
            self.timestamps = self.timestamps[:50]
        elif self.lie == "backwards":
            self.timestamps = self.timestamps[::-1].copy()
        elif self.lie == "nan":
            self.timestamps = np.full_like(self.timestamps, np.nan)

    def _read_unique_frames(self, indices):
        frames = super()._read_unique_frames(indices)
        if self.lie == "short_batch":
            return frames[:-1]
        if self.lie == "frame_size":
            return [frame[:, :-2] for frame in frames]
        if self.lie == "dtype":
            return [frame.astype(np.float32) for frame in frames]
        return frames


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("lie", "words"),
    [
        ("count", "declares 100 frames"),
        ("backwards", "go backwards"),
        ("nan", "not finite"),
        ("short_batch", "returned 2 frames for 3"),
        ("frame_size", "64x48"),
        ("dtype", "dtype float32"),
    ],
)
def test_wrong_decoder_output_is_caught(processor_index_clips, lie, words, backend):
    LyingSource.lie = lie
    with pytest.raises(DecodedDataMismatchError, match=words) as raised:
        with LyingSource(processor_index_clips["25fps"], backend=backend, index=0) as source:
            source.read_frames([0, 10, 20])
    assert isinstance(raised.value, CorruptVideoError) and isinstance(raised.value, AVFMAEInputError)


def test_audio_much_shorter_than_declared_is_caught(monkeypatch, processor_index_clips):
    original = decoding._frames_to_waveform

    def half_the_audio(frames, stream, source):
        waveform, rate = original(frames, stream, source)
        return waveform[:, : waveform.shape[1] // 2], rate

    monkeypatch.setattr(decoding, "_frames_to_waveform", half_the_audio)
    for backend in BACKENDS:
        with open_video(processor_index_clips["25fps"], backend=backend, index=4) as source:
            with pytest.raises(
                DecodedDataMismatchError, match="item 4.*declares 4.0.* s but the decoder returned 2.0"
            ):
                source.read_audio()


def test_pyav_without_distinct_timestamps_decodes_every_frame(processor_index_clips):
    """PyAV skips unneeded non-reference frames by timestamp; without distinct timestamps it counts frames."""
    path = processor_index_clips["25fps"]
    with open_video(path, backend="pyav") as source:
        for packet in source._video_packets:
            packet.pts = 0
        indices = [3, 50, 99]
        assert [synthetic.frame_index_of(frame) for frame in source.read_frames(indices)] == indices


def test_errors_survive_pickling(tmp_path):
    import pickle

    error = InputNotFoundError("no such file or folder.", 3, tmp_path / "a.mp4")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is InputNotFoundError and str(clone) == str(error) and clone.index == 3
    assert clone.source == str(tmp_path / "a.mp4") and isinstance(clone, ValueError)
