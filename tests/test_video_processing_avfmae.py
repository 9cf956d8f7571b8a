# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVFMAEVideoProcessor: official eval transforms, frame sampling modes, face-crop policy, serialisation."""

import logging
import os
import pickle
import unittest

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from avfmae_hf import AVFMAEVideoProcessor, FaceDetection, FaceDetector
from avfmae_hf.video_decoding_avfmae import is_decord_available
from avfmae_hf.video_processing_avfmae import (
    audio_sample_range,
    constant_rate_frame_map,
    sample_frame_indices,
    sliding_window_samplings,
    split_videos,
)
from tests.media import synthetic


# decord is optional and has no ARM wheels; there PyAV is compared with itself.
BACKENDS = ["decord", "pyav"] if is_decord_available() else ["pyav"]
FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "official", "video_eval_preproc")


@pytest.fixture(scope="module")
def processor():
    return AVFMAEVideoProcessor()


def test_reproduces_official_eval_preprocessing(processor):
    official = load_file(os.path.join(FIXTURE_DIR, "video_eval_preproc.safetensors"))
    frames = official["frames_uint8"]  # (4, 120, 96, 3)
    clip = processor.transform_frames(list(frames))  # (4, 3, 160, 160)
    np.testing.assert_allclose(clip.permute(1, 0, 2, 3).numpy(), official["clip"], atol=1e-4, rtol=0)
    # Through the public call: 4 frames sampled uniformly out of 4 are the 4 frames.
    four = AVFMAEVideoProcessor(num_frames=4, sampling_mode="uniform")
    pixel_values = four(frames, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 4, 3, 160, 160) and pixel_values.dtype == torch.float32
    np.testing.assert_allclose(pixel_values[0].permute(1, 0, 2, 3).numpy(), official["clip"], atol=1e-4, rtol=0)
    # The bilinear resize itself matches the official PIL resize to the byte.
    denormalised = (clip * torch.tensor(processor.image_std).view(1, 3, 1, 1)) + torch.tensor(
        processor.image_mean
    ).view(1, 3, 1, 1)
    resized = (denormalised * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(resized, official["resized_uint8"])


def test_center_sampling():
    """The centred window of 64 frames at stride 4; shorter clips read at the stride and padded (official test rule)."""
    sampling = sample_frame_indices(100, "center")
    assert sampling.indices.tolist() == list(range(18, 82, 4)) and not sampling.padded
    assert (sampling.audio_start_frame, sampling.audio_end_frame, sampling.total_frames) == (18, 82, 100)
    exact = sample_frame_indices(64, "center")
    assert exact.indices.tolist() == list(range(0, 64, 4)) and not exact.padded
    assert (exact.audio_start_frame, exact.audio_end_frame) == (0, 63)
    short = sample_frame_indices(30, "center")
    assert short.indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8 and short.padded
    assert (short.audio_start_frame, short.audio_end_frame) == (0, 29)
    assert sample_frame_indices(1, "center").indices.tolist() == [0] * 16


def test_uniform_sampling(caplog):
    """Spread over clips of at most one window; a longer clip takes the centred window (with a warning)."""
    sampling = sample_frame_indices(40, "uniform")
    assert sampling.indices.tolist() == [0, 3, 5, 8, 10, 13, 16, 18, 21, 23, 26, 29, 31, 34, 36, 39]
    assert (sampling.audio_start_frame, sampling.audio_end_frame, sampling.total_frames) == (0, 39, 40)
    assert not sampling.padded
    assert sample_frame_indices(5, "uniform").indices.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4]
    assert sample_frame_indices(1, "uniform").indices.tolist() == [0] * 16
    logging.Logger.warning_once.cache_clear()  # the warning is logged once per process
    with caplog.at_level("WARNING"):
        long = sample_frame_indices(300, "uniform")
    assert long.indices.tolist() == list(range(118, 182, 4)) and "centred window" in caplog.text


def test_sliding_windows():
    """Windows every `window_hop` frames (default 32) and one ending at the last frame; one padded window for short
    clips."""
    windows = sliding_window_samplings(150)
    assert [window.indices[0] for window in windows] == [0, 32, 64, 86]
    assert windows[1].indices.tolist() == list(range(32, 96, 4))
    assert [(w.audio_start_frame, w.audio_end_frame) for w in windows] == [(0, 64), (32, 96), (64, 128), (86, 149)]
    assert not any(window.padded for window in windows)
    assert [w.indices[0] for w in sliding_window_samplings(128, window_hop=64)] == [0, 64]
    assert [w.indices[0] for w in sliding_window_samplings(100, window_hop=100)] == [0, 36]
    assert [w.indices[0] for w in sliding_window_samplings(64)] == [0]
    (short,) = sliding_window_samplings(30)
    assert short.padded and short.indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8
    for hop in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="window_hop"):
            sliding_window_samplings(100, window_hop=hop)


def test_sliding_mode_outputs_every_window_of_every_video(caplog):
    processor = AVFMAEVideoProcessor(
        size={"height": 48, "width": 64}, image_mean=[0, 0, 0], image_std=[1, 1, 1], sampling_mode="sliding"
    )
    videos = [synthetic.index_frames(100), synthetic.index_frames(30), synthetic.index_frames(64)]
    outputs = processor(videos, window_hop=48, return_tensors="pt")
    # 100 frames: windows at 0 and 36 (the last one ends at frame 99); 30 frames: one padded; 64 frames: one.
    assert outputs["pixel_values"].shape == (4, 16, 3, 48, 64)
    assert outputs["video_index"].tolist() == [0, 0, 1, 2] and outputs["video_index"].dtype == torch.int64
    # Frame arrays carry no frame rate: 25 fps.
    torch.testing.assert_close(outputs["window_start"], torch.tensor([0.0, 36 / 25, 0.0, 0.0]))
    torch.testing.assert_close(outputs["window_end"], torch.tensor([64 / 25, 100 / 25, 30 / 25, 64 / 25]))
    assert outputs["window_start"].dtype == torch.float32
    assert outputs["window_padded"].tolist() == [False, False, True, False]
    frames = (outputs["pixel_values"] * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    shown = [[synthetic.frame_index_of(frame) for frame in window] for window in frames]
    assert shown[1] == list(range(36, 100, 4)) and shown[2] == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8
    assert "face_found" not in outputs
    with pytest.raises(ValueError, match="window_hop"):
        processor(videos[0], window_hop=0)


def test_official_train_sampling_long_clip():
    """More than 64 frames: end = randint(64, n), 16 indices linspace(end - 64, end) clipped to end - 1."""
    sampling = sample_frame_indices(100, "train", generator=np.random.RandomState(0))
    end = np.random.RandomState(0).randint(64, 100)  # the official draw, from the same stream
    start = end - 64
    expected = np.clip(np.linspace(start, end, 16), start, end - 1).astype(np.int64)
    assert sampling.indices.tolist() == expected.tolist()
    assert sampling.indices[0] == start and sampling.indices[-1] == end - 1
    assert (sampling.audio_start_frame, sampling.audio_end_frame) == (start, min(start + 64, 99))
    draws = {tuple(sample_frame_indices(100, "train", generator=seed).indices) for seed in range(30)}
    assert len(draws) > 10
    same = [sample_frame_indices(100, "train", generator=np.random.default_rng(5)).indices for _ in range(2)]
    np.testing.assert_array_equal(*same)


def test_official_train_sampling_short_clip():
    """At most 64 frames: linspace(0, n, n // 4) then the last frame repeated, clipped to n - 1."""
    sampling = sample_frame_indices(30, "train")
    assert sampling.indices.tolist() == [0, 5, 10, 15, 20, 25, 29] + [29] * 9
    assert (sampling.audio_start_frame, sampling.audio_end_frame) == (0, 29)
    assert sample_frame_indices(64, "train").indices.tolist() == [
        0,
        4,
        8,
        12,
        17,
        21,
        25,
        29,
        34,
        38,
        42,
        46,
        51,
        55,
        59,
        63,
    ]
    assert sample_frame_indices(3, "train").indices.tolist() == [2] * 16  # n // 4 == 0: only the repeated frame


def test_official_test_segments():
    """Every 4th frame, padded to 16; segment k of 2 starts at k * (n_idx - 16)."""
    first = sample_frame_indices(100, "test", test_segment=0)
    second = sample_frame_indices(100, "test", test_segment=1)
    assert first.indices.tolist() == list(range(0, 64, 4))
    assert second.indices.tolist() == list(range(36, 100, 4))  # 25 strided indices: start 9 -> frame 36
    assert (first.audio_start_frame, first.audio_end_frame) == (0, 64)
    assert (second.audio_start_frame, second.audio_end_frame) == (36, 99)  # 96 + 4 capped at n - 1
    short = sample_frame_indices(30, "test", test_segment=1)
    assert short.indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8
    assert (short.audio_start_frame, short.audio_end_frame) == (0, 29)
    with pytest.raises(ValueError, match="test_segment"):
        sample_frame_indices(30, "test", test_segment=2)


@pytest.mark.parametrize(
    ("frames", "samples", "span", "expected"),
    [
        (100, 64000, (0, 64), (0, int(64 / 99 * 64000))),
        (100, 64000, (36, 99), (int(36 / 99 * 64000), 64000)),
        (90, 48128, (10, 74), (int(10 / 89 * 48128), int(74 / 89 * 48128))),  # 30 fps
        (150, 48128, (0, 64), (0, int(64 / 149 * 48128))),  # 50 fps: 1.28 s of 3 s
        (1, 20000, (0, 0), (0, 20000)),  # one frame: the whole (short) track
    ],
)
def test_audio_span_follows_the_official_relative_rule(frames, samples, span, expected):
    assert audio_sample_range(span[0], span[1], frames, samples) == expected


def test_short_audio_slices():
    # A slice of at most 1024 samples: the whole track if it is shorter than 2.56 s, else an error.
    assert audio_sample_range(0, 1, 100, 30000) == (0, 30000)
    from avfmae_hf import AudioAlignmentError

    with pytest.raises(AudioAlignmentError, match="item 3.*1024"):
        audio_sample_range(0, 1, 100, 60000, index=3)


def test_sampled_frames_are_the_decoded_frames(processor_index_clips):
    processor = AVFMAEVideoProcessor(
        size={"height": 48, "width": 64}, image_mean=[0, 0, 0], image_std=[1, 1, 1], do_face_crop=False
    )
    path = processor_index_clips["25fps"]
    for mode, segment in (("center", 0), ("uniform", 0), ("train", 0), ("test", 0), ("test", 1)):
        options = processor.resolve_options(sampling_mode=mode)
        (clip,) = processor.process_video(path, 0, segment, np.random.RandomState(3), options=options)
        clip.source.close()
        frames = (clip.pixel_values * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        assert [synthetic.frame_index_of(frame) for frame in frames] == clip.sampling.indices.tolist(), mode


def test_variable_frame_rate_is_put_on_a_constant_rate(processor_vfr_clip, caplog):
    path, timestamps = processor_vfr_clip
    frame_map = constant_rate_frame_map(timestamps)
    ticks = np.linspace(0, timestamps[-1], 60)
    # Each tick shows the last frame that started at or before it.
    assert all(
        timestamps[frame_map[i]] <= ticks[i] + 1e-9 < timestamps[min(frame_map[i] + 1, 59)] + 1e-9 for i in range(59)
    )
    assert constant_rate_frame_map(np.arange(50) * 0.04) is None
    processor = AVFMAEVideoProcessor(
        size={"height": 48, "width": 64}, image_mean=[0, 0, 0], image_std=[1, 1, 1], do_face_crop=False
    )
    with caplog.at_level("WARNING"):
        (clip,) = processor.process_video(path, 7)
    clip.source.close()
    assert "item 7" in caplog.text and "variable frame rate" in caplog.text
    frames = (clip.pixel_values * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    shown = [synthetic.frame_index_of(frame) for frame in frames]
    assert shown == frame_map[clip.sampling.indices].tolist()
    # Evenly spaced in time: the slow second half (60 ms per frame) gets fewer source frames per tick.
    assert np.all(np.diff(timestamps[shown]) <= 2 * timestamps[-1] / 15)


@pytest.mark.parametrize(
    "video",
    [
        np.full((20, 97, 121), 128, np.uint8),  # grey, odd size
        np.full((20, 97, 121, 4), 128, np.uint8),  # RGBA
        np.full((20, 31, 17, 1), 128, np.uint8),  # tiny, one channel
    ],
)
def test_grey_rgba_and_odd_sized_frames(processor, video):
    pixel_values = processor(video, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 16, 3, 160, 160)
    expected = (128 / 255 - torch.tensor(processor.image_mean)) / torch.tensor(processor.image_std)
    torch.testing.assert_close(pixel_values[0, :, :, 80, 80], expected.expand(16, 3), atol=1e-5, rtol=0)


def test_channels_first_and_float_videos_give_the_same_clip(processor):
    frames = np.random.default_rng(3).integers(0, 256, (20, 40, 30, 3), dtype=np.uint8)
    expected = processor(frames, return_tensors="pt")["pixel_values"]
    channels_first = torch.from_numpy(frames).permute(0, 3, 1, 2)
    for video in (channels_first, channels_first.float() / 255, channels_first[None]):
        np.testing.assert_array_equal(processor(video, return_tensors="pt")["pixel_values"], expected)


class CountingDetector(FaceDetector):
    """A plug-in detector: one fixed face box, and it counts its calls."""

    def __init__(self):
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        height, width = frame.shape[:2]
        return [FaceDetection(np.array([width * 0.4, height * 0.3, width * 0.6, height * 0.6]), 0.9)]


def test_face_crop_policy_and_plug_in_detector(processor_index_clips, processor_frame_folder):
    detector = CountingDetector()
    processor = AVFMAEVideoProcessor(face_detector=detector)
    assert processor.to_dict()["face_detector"] == "CountingDetector"
    videos = processor(processor_index_clips["short"], return_tensors="pt")  # encoded video: crop by default
    assert detector.calls == 16 and videos["face_found"].tolist() == [True]
    frames = processor([processor_frame_folder, synthetic.index_frames(20)])  # prepared frames: no crop
    assert detector.calls == 16 and "face_found" not in frames
    forced = processor(processor_frame_folder, do_face_crop=True)
    assert detector.calls == 32 and forced["face_found"].tolist() == [True]
    off = AVFMAEVideoProcessor(face_detector=detector, do_face_crop=False)(processor_index_clips["short"])
    assert detector.calls == 32 and "face_found" not in off


def test_face_clip_is_cropped_to_the_face(processor_face_clip):
    path, boxes = processor_face_clip
    processor = AVFMAEVideoProcessor()
    (clip,) = processor.process_video(path)
    clip.source.close()
    assert clip.face_found
    # The face fills the crop: the crop differs from a plain resize of the whole frame.
    (whole,) = AVFMAEVideoProcessor(do_face_crop=False).process_video(path)
    whole.source.close()
    assert (clip.pixel_values - whole.pixel_values).abs().mean() > 0.3


def test_face_free_clip_gets_the_fallback_flag(processor_face_free_clip, processor_face_clip, caplog):
    processor = AVFMAEVideoProcessor()
    with caplog.at_level("WARNING"):
        output = processor([processor_face_clip[0], processor_face_free_clip], return_tensors="pt")
    assert output["face_found"].tolist() == [True, False]
    assert "item 1" in caplog.text and "no face found" in caplog.text
    # The fallback is the central square of each frame.
    centre = AVFMAEVideoProcessor(do_face_crop=False, size={"height": 160, "width": 160})
    frames = np.stack([synthetic.background(kind=i // 7) for i in range(25)])[:, :, 140:500]
    expected = centre(frames)["pixel_values"]
    assert np.abs(output["pixel_values"][1].numpy() - expected[0]).mean() < 0.1


def test_split_videos():
    frames = synthetic.index_frames(3)
    assert len(split_videos(frames)) == 1
    assert len(split_videos([frames, frames])) == 2
    assert len(split_videos(list(frames))) == 1  # a list of frames is one video
    assert len(split_videos(np.stack([frames, frames]))) == 2
    with pytest.raises(ValueError, match="empty"):
        split_videos([])


def test_save_load_round_trip(tmp_path):
    from transformers import AutoVideoProcessor

    processor = AVFMAEVideoProcessor(num_frames=8, sampling_mode="test", do_face_crop=False, face_alignment="box")
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "video_preprocessor_config.json").is_file()
    for loaded in (AVFMAEVideoProcessor.from_pretrained(tmp_path), AutoVideoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, AVFMAEVideoProcessor)
        assert loaded.to_dict() == processor.to_dict()
    assert AVFMAEVideoProcessor.from_pretrained(tmp_path, num_frames=4).num_frames == 4
    assert AutoVideoProcessor.from_pretrained(tmp_path, do_normalize=False).do_normalize is False
    with pytest.raises(TypeError, match="num_frame"):
        AVFMAEVideoProcessor.from_pretrained(tmp_path, num_frame=4)


def test_every_option_acts_where_it_is_passed(tmp_path):
    """Constructor, from_pretrained and call options all act; values written out by hand for flat grey frames."""
    frames = np.full((16, 20, 30, 3), 128, np.uint8)

    def centre_pixel(processor, **kwargs):
        return processor(frames, return_tensors="pt", **kwargs)["pixel_values"][0, :, :, 5, 5]

    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    default = AVFMAEVideoProcessor(size={"height": 10, "width": 10})
    torch.testing.assert_close(centre_pixel(default)[0], (128 / 255 - mean) / std)
    torch.testing.assert_close(centre_pixel(default, do_normalize=False)[0], torch.full((3,), 128 / 255))
    torch.testing.assert_close(centre_pixel(default, do_normalize=False, do_rescale=False)[0], torch.full((3,), 128.0))
    torch.testing.assert_close(
        centre_pixel(default, image_mean=[0.5] * 3, image_std=[0.25] * 3)[0],
        torch.full((3,), (128 / 255 - 0.5) / 0.25),
    )
    torch.testing.assert_close(
        centre_pixel(default, do_normalize=False, rescale_factor=0.5)[0], torch.full((3,), 64.0)
    )
    shapes = {
        "size": default(frames, size={"height": 12, "width": 8})["pixel_values"].shape,
        "no resize": default(frames, do_resize=False)["pixel_values"].shape,
        "shortest edge": default(frames, size={"shortest_edge": 10})["pixel_values"].shape,
        "crop": default(frames, do_center_crop=True, crop_size={"height": 6, "width": 4})["pixel_values"].shape,
        "num_frames": default(frames, num_frames=4)["pixel_values"].shape,
        "every frame": default(frames[:7], do_sample_frames=False)["pixel_values"].shape,
    }
    assert shapes == {
        "size": (1, 16, 3, 12, 8),
        "no resize": (1, 16, 3, 20, 30),
        "shortest edge": (1, 16, 3, 10, 15),
        "crop": (1, 16, 3, 6, 4),
        "num_frames": (1, 4, 3, 10, 10),
        "every frame": (1, 7, 3, 10, 10),
    }
    # PIL's nearest filter keeps a sharp edge that bilinear blurs.
    edge = np.zeros((16, 4, 4, 3), np.uint8)
    edge[:, :, 2:] = 255
    nearest = default(edge, resample=0, do_normalize=False, size={"height": 4, "width": 8})["pixel_values"]
    assert set(np.unique(nearest)) == {0.0, 1.0}
    assert len(np.unique(default(edge, do_normalize=False, size={"height": 4, "width": 8})["pixel_values"])) > 2
    # Constructor and from_pretrained settings persist.
    plain = AVFMAEVideoProcessor(size={"height": 10, "width": 10}, do_normalize=False)
    torch.testing.assert_close(centre_pixel(plain)[0], torch.full((3,), 128 / 255))
    default.save_pretrained(tmp_path)
    reloaded = AVFMAEVideoProcessor.from_pretrained(tmp_path, do_normalize=False, do_rescale=False)
    torch.testing.assert_close(centre_pixel(reloaded)[0], torch.full((3,), 128.0))
    torch.testing.assert_close(centre_pixel(default)[0], (128 / 255 - mean) / std)  # the call changed nothing


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"num_frame": 4}, TypeError, "unknown arguments"),
        ({"do_convert_rgb": False}, ValueError, "do_convert_rgb"),
        ({"fps": 2}, ValueError, "fps"),
        ({"do_pad": True}, ValueError, "do_pad"),
        ({"data_format": "channels_last"}, ValueError, "data_format"),
        ({"size": {"longest_edge": 20}}, ValueError, "size must be"),
        ({"do_center_crop": True}, ValueError, "crop_size"),
        ({"resample": "bilinear"}, ValueError, "resample"),
    ],
)
def test_options_that_cannot_act_raise(kwargs, error, words):
    frames = np.zeros((16, 8, 8, 3), np.uint8)
    with pytest.raises(error, match=words):
        AVFMAEVideoProcessor()(frames, **kwargs)
    if "resample" not in kwargs:  # (the constructor's type check words it differently)
        with pytest.raises(error, match=words):
            AVFMAEVideoProcessor(**kwargs)


def test_pickles_for_data_loader_workers(processor_index_clips):
    processor = AVFMAEVideoProcessor()
    processor(processor_index_clips["short"])  # builds the detector
    clone = pickle.loads(pickle.dumps(processor))
    assert clone.to_dict() == processor.to_dict()
    np.testing.assert_array_equal(
        clone(processor_index_clips["short"])["pixel_values"],
        processor(processor_index_clips["short"])["pixel_values"],
    )


def test_invalid_settings():
    with pytest.raises(ValueError, match="sampling_mode"):
        AVFMAEVideoProcessor(sampling_mode="random")
    with pytest.raises(ValueError, match="face_alignment"):
        AVFMAEVideoProcessor(face_alignment="eyes")
    with pytest.raises(ValueError, match="face detector"):
        AVFMAEVideoProcessor(face_detector="yunet", do_face_crop=True)(synthetic.index_frames(4))


def test_backend_crop_size_smoothing_and_segment_settings(processor_face_clip):
    path = processor_face_clip[0]
    decord_output = AVFMAEVideoProcessor(video_backend=BACKENDS[0])(path)["pixel_values"]
    np.testing.assert_array_equal(AVFMAEVideoProcessor()(path)["pixel_values"], decord_output)  # PyAV, the default
    # A direct 160 px crop differs from OpenFace's 256 px crop resized to 160 only by resampling.
    direct = AVFMAEVideoProcessor(face_crop_size=160)(path)["pixel_values"]
    assert 0 < np.abs(direct - decord_output).mean() < 0.1
    # Without smoothing, every frame's crop follows its own detection.
    (raw,) = AVFMAEVideoProcessor(smooth_face_track=False).process_video(path)
    raw.source.close()
    assert not np.array_equal(raw.pixel_values.numpy(), decord_output[0])
    box = AVFMAEVideoProcessor(face_alignment="box")(path)
    assert box["face_found"].tolist() == [True] and np.abs(box["pixel_values"] - decord_output).mean() > 0.05
    three = AVFMAEVideoProcessor(num_test_segments=3, sampling_mode="test")
    assert [three.sample(100, test_segment=k)[0].indices[0] for k in range(3)] == [0, 16, 36]


class AVFMAEVideoProcessingTester:
    """Inputs and expected shapes for transformers' `VideoProcessingTestMixin`."""

    def __init__(self, batch_size=3, num_frames=8, num_channels=3, min_resolution=24, max_resolution=40):
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.num_channels = num_channels
        self.min_resolution = min_resolution
        self.max_resolution = max_resolution

    def prepare_video_processor_dict(self):
        # shortest-edge resize then a centre crop, the sizes the mixin's from_dict test expects
        return {
            "num_frames": self.num_frames,
            "size": {"shortest_edge": 20},
            "do_center_crop": True,
            "crop_size": {"height": 18, "width": 18},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }

    def expected_output_video_shape(self, videos):
        return self.num_frames, 3, 18, 18

    def prepare_video_inputs(self, equal_resolution=False, return_tensors="pil"):
        return _video_processing_common().prepare_video_inputs(
            batch_size=self.batch_size,
            num_frames=self.num_frames,
            num_channels=self.num_channels,
            min_resolution=self.min_resolution,
            max_resolution=self.max_resolution,
            equal_resolution=equal_resolution,
            return_tensors=return_tensors,
        )


def _video_processing_common():
    from tests.transformers_suite import import_common

    return import_common("test_video_processing_common")


class AVFMAEVideoProcessingTest(_video_processing_common().VideoProcessingTestMixin, unittest.TestCase):
    fast_video_processing_class = AVFMAEVideoProcessor
    input_name = "pixel_values"
    test_cast_dtype = True

    # Disabled mixin tests, each for an architectural reason (the others pass):
    @unittest.skip(reason="the official frame geometry: short clips are padded, not refused; fps sampling raises")
    def test_call_sample_frames(self):
        pass

    def setUp(self):
        super().setUp()
        self.video_processor_tester = AVFMAEVideoProcessingTester()

    @property
    def video_processor_dict(self):
        return self.video_processor_tester.prepare_video_processor_dict()
