# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ for Hugging Face transformers. Importing the package registers every class with its Auto class."""

from transformers import AutoConfig

from .configuration_avfmae import AVFMAEAudioConfig, AVFMAEConfig, AVFMAEVideoConfig


AutoConfig.register(AVFMAEConfig.model_type, AVFMAEConfig, exist_ok=True)
AutoConfig.register(AVFMAEVideoConfig.model_type, AVFMAEVideoConfig, exist_ok=True)
AutoConfig.register(AVFMAEAudioConfig.model_type, AVFMAEAudioConfig, exist_ok=True)

__version__ = "0.1.0"

__all__ = ["AVFMAEAudioConfig", "AVFMAEConfig", "AVFMAEVideoConfig"]
