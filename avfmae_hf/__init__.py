# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ for Hugging Face transformers. Importing the package registers every class with its Auto class."""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForVideoClassification

from .checkpoint_avfmae import convert_checkpoint, load_original_checkpoint
from .configuration_avfmae import AVFMAEAudioConfig, AVFMAEConfig, AVFMAEVideoConfig
from .convert_avfmae import ConversionReport, convert_original_state_dict
from .hub_avfmae import build_model_card, export_checkpoint, push_to_hub
from .masking_avfmae import AVFMAEDualMaskingGenerator, AVFMAEMasks
from .modeling_avfmae import (
    AVFMAEForPreTraining,
    AVFMAEForPreTrainingOutput,
    AVFMAEForVideoClassification,
    AVFMAEModel,
    AVFMAEModelOutput,
    AVFMAEPreTrainedModel,
    AVFMAEVideoClassifierOutput,
)


AutoConfig.register(AVFMAEConfig.model_type, AVFMAEConfig, exist_ok=True)
AutoConfig.register(AVFMAEVideoConfig.model_type, AVFMAEVideoConfig, exist_ok=True)
AutoConfig.register(AVFMAEAudioConfig.model_type, AVFMAEAudioConfig, exist_ok=True)
AutoModel.register(AVFMAEConfig, AVFMAEModel, exist_ok=True)
AutoModelForPreTraining.register(AVFMAEConfig, AVFMAEForPreTraining, exist_ok=True)
AutoModelForVideoClassification.register(AVFMAEConfig, AVFMAEForVideoClassification, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "AVFMAEAudioConfig",
    "AVFMAEConfig",
    "AVFMAEDualMaskingGenerator",
    "AVFMAEForPreTraining",
    "AVFMAEForPreTrainingOutput",
    "AVFMAEForVideoClassification",
    "AVFMAEMasks",
    "AVFMAEModel",
    "AVFMAEModelOutput",
    "AVFMAEPreTrainedModel",
    "AVFMAEVideoClassifierOutput",
    "AVFMAEVideoConfig",
    "ConversionReport",
    "build_model_card",
    "convert_checkpoint",
    "convert_original_state_dict",
    "export_checkpoint",
    "load_original_checkpoint",
    "push_to_hub",
]
