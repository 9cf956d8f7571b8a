# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The small sample clip shipped inside the package for the offline demo."""

import configparser
import os

import avfmae_hf
from avfmae_hf.video_decoding_avfmae import open_video


SAMPLE = os.path.join(os.path.dirname(avfmae_hf.__file__), "data", "sample_talking_face.mp4")


def test_sample_clip_is_small_and_shipped_as_package_data():
    assert os.path.getsize(SAMPLE) <= 300 * 1024
    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(__file__), "..", "setup.cfg"))
    assert "data/*" in config["options.package_data"]["avfmae_hf"]


def test_sample_clip_is_a_talking_face():
    with open_video(SAMPLE) as source:
        assert source.num_frames == 75 and source.has_audio
        waveform, rate = source.read_audio()
    assert rate == 16000 and abs(waveform.shape[1] / rate - 3.0) < 0.1 and abs(waveform).max() > 0.1
    inputs = avfmae_hf.AVFMAEProcessor()(videos=SAMPLE, return_tensors="pt")
    assert inputs["face_found"].tolist() == [True]
    assert inputs["pixel_values"].shape == (1, 16, 3, 160, 160) and inputs["audio_values"].shape == (1, 1, 256, 128)
