# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The processor modules can be uploaded as Hub code: they import (outside `try` blocks) only the standard library,
torch, numpy, transformers and huggingface_hub, and a saved processor loads with `trust_remote_code` where the
package itself cannot be imported."""

import os
import subprocess
import sys
import textwrap

import pytest
from transformers.dynamic_module_utils import get_imports

import avfmae_hf


PROCESSOR_MODULES = [
    "errors_avfmae.py",
    "face_detection_avfmae.py",
    "feature_extraction_avfmae.py",
    "processing_avfmae.py",
    "random_avfmae.py",
    "video_decoding_avfmae.py",
    "video_processing_avfmae.py",
]
ALLOWED = {"torch", "numpy", "transformers", "huggingface_hub"}


@pytest.mark.parametrize("module", PROCESSOR_MODULES)
def test_modules_require_only_the_hub_code_stack(module):
    imports = set(get_imports(os.path.join(os.path.dirname(avfmae_hf.__file__), module)))
    assert imports - set(sys.stdlib_module_names) <= ALLOWED


@pytest.mark.slow
def test_saved_processor_loads_as_remote_code(tmp_path):
    package_root = os.path.dirname(os.path.dirname(avfmae_hf.__file__))
    save = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {package_root!r})
        from avfmae_hf import AVFMAEFeatureExtractor, AVFMAEProcessor, AVFMAEVideoProcessor
        AVFMAEProcessor.register_for_auto_class("AutoProcessor")
        AVFMAEVideoProcessor.register_for_auto_class("AutoVideoProcessor")
        AVFMAEFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
        AVFMAEProcessor(AVFMAEVideoProcessor(num_frames=8)).save_pretrained({str(tmp_path)!r})
        """
    )
    load = textwrap.dedent(
        f"""
        import sys
        sys.modules["avfmae_hf"] = None  # the package must not be importable here: only the saved files count
        import numpy as np
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        frames = np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
        audio = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
        inputs = processor(videos=frames, audio=audio, sampling_rate=16000, return_tensors="pt")
        print(type(processor).__module__, tuple(inputs["pixel_values"].shape), tuple(inputs["audio_values"].shape))
        """
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    environment.pop("PYTHONPATH", None)
    subprocess.run([sys.executable, "-c", save], check=True, env=environment, cwd=tmp_path)
    assert (tmp_path / "processing_avfmae.py").is_file() and (tmp_path / "video_decoding_avfmae.py").is_file()
    result = subprocess.run(
        [sys.executable, "-c", load], env=environment, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
    assert "(1, 8, 3, 160, 160) (1, 1, 256, 128)" in result.stdout
