# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The official fixtures the processor tests read are byte-identical copies of the shared reference set."""

import hashlib
import os

import pytest


HERE = os.path.dirname(os.path.abspath(__file__))
COPY_DIR = os.path.join(HERE, "fixtures", "official")
PROCESSOR_FIXTURES = [
    "README.md",
    "audio_fbank/audio_fbank.safetensors",
    "audio_fbank/config.json",
    "video_eval_preproc/video_eval_preproc.safetensors",
    "video_eval_preproc/config.json",
]
SHARED_CANDIDATES = [
    os.path.join(HERE, "..", "..", "shared", "fixtures", "reference"),
    "/work/shared/fixtures/reference",
]


def sha256(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def test_processor_fixtures_are_in_the_project():
    for name in PROCESSOR_FIXTURES:
        assert os.path.getsize(os.path.join(COPY_DIR, name)) > 0, name


def test_processor_fixtures_match_the_shared_reference():
    shared = next((path for path in SHARED_CANDIDATES if os.path.isdir(path)), None)
    if shared is None:
        pytest.skip("the shared reference fixtures are not on this machine")
    for name in PROCESSOR_FIXTURES:
        assert sha256(os.path.join(COPY_DIR, name)) == sha256(os.path.join(shared, name)), name
