# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The committed official fixtures (tests/fixtures/official) are byte-identical copies of the shared reference set,
where that set is checked out beside the project."""

import hashlib
from pathlib import Path

import pytest


OFFICIAL = Path(__file__).parent / "fixtures" / "official"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference"


@pytest.mark.skipif(not SHARED.is_dir(), reason="only where the shared reference fixtures are checked out beside")
def test_committed_fixtures_are_byte_identical_to_the_shared_reference():
    copies = sorted(path for path in OFFICIAL.rglob("*") if path.is_file())
    # README, six key dumps, two tiny models (4 files each), audio and video preprocessing, the augmentations (5)
    assert len(copies) >= 24
    assert {path.name for path in (OFFICIAL / "augment").iterdir()} == {
        "config.json",
        "mixup.safetensors",
        "multiscale_crop.safetensors",
        "randaug_ops.safetensors",
        "resized_crop.safetensors",
    }
    for path in copies:
        reference = SHARED / path.relative_to(OFFICIAL)
        assert reference.is_file(), f"{path} has no counterpart in {SHARED}"
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(reference.read_bytes()).digest(), path
