# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ for Hugging Face transformers. Importing the package registers every class with its Auto class."""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForVideoClassification,
    AutoProcessor,
    AutoVideoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .checkpoint_avfmae import convert_checkpoint, load_original_checkpoint
from .configuration_avfmae import AVFMAEAudioConfig, AVFMAEConfig, AVFMAEVideoConfig
from .convert_avfmae import ConversionReport, convert_original_state_dict
from .errors_avfmae import (
    AudioAlignmentError,
    AudioTooShortError,
    AVFMAEInputError,
    CorruptVideoError,
    DecodedDataMismatchError,
    EmptyInputError,
    InputNotFoundError,
    InvalidFramesError,
    MissingAudioError,
    UnusableAudioError,
    ZeroLengthVideoError,
)
from .face_detection_avfmae import FaceDetection, FaceDetector, HaarFaceDetector, MTCNNFaceDetector
from .feature_extraction_avfmae import AVFMAEFeatureExtractor
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
from .original_config_avfmae import config_from_original
from .pipeline_avfmae import PIPELINE_TASK, AVFMAEAudioVideoClassificationPipeline
from .processing_avfmae import AVFMAEProcessor
from .video_processing_avfmae import AVFMAEVideoProcessor


AutoConfig.register(AVFMAEConfig.model_type, AVFMAEConfig, exist_ok=True)
AutoConfig.register(AVFMAEVideoConfig.model_type, AVFMAEVideoConfig, exist_ok=True)
AutoConfig.register(AVFMAEAudioConfig.model_type, AVFMAEAudioConfig, exist_ok=True)
AutoModel.register(AVFMAEConfig, AVFMAEModel, exist_ok=True)
AutoModelForPreTraining.register(AVFMAEConfig, AVFMAEForPreTraining, exist_ok=True)
AutoModelForVideoClassification.register(AVFMAEConfig, AVFMAEForVideoClassification, exist_ok=True)
AutoFeatureExtractor.register(AVFMAEConfig, AVFMAEFeatureExtractor, exist_ok=True)
AutoVideoProcessor.register(AVFMAEConfig, AVFMAEVideoProcessor, exist_ok=True)
AutoProcessor.register(AVFMAEConfig, AVFMAEProcessor, exist_ok=True)
if PIPELINE_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK,
        pipeline_class=AVFMAEAudioVideoClassificationPipeline,
        pt_model=AutoModelForVideoClassification,
        type="multimodal",
    )

__version__ = "0.1.0"

__all__ = [
    "AVFMAEAudioConfig",
    "AVFMAEAudioVideoClassificationPipeline",
    "AVFMAEConfig",
    "AVFMAEDualMaskingGenerator",
    "AVFMAEFeatureExtractor",
    "AVFMAEForPreTraining",
    "AVFMAEForPreTrainingOutput",
    "AVFMAEForVideoClassification",
    "AVFMAEInputError",
    "AVFMAEMasks",
    "AVFMAEModel",
    "AVFMAEModelOutput",
    "AVFMAEPreTrainedModel",
    "AVFMAEProcessor",
    "AVFMAEVideoClassifierOutput",
    "AVFMAEVideoConfig",
    "AVFMAEVideoProcessor",
    "AudioAlignmentError",
    "AudioTooShortError",
    "ConversionReport",
    "CorruptVideoError",
    "DecodedDataMismatchError",
    "EmptyInputError",
    "FaceDetection",
    "FaceDetector",
    "HaarFaceDetector",
    "InputNotFoundError",
    "InvalidFramesError",
    "MTCNNFaceDetector",
    "MissingAudioError",
    "UnusableAudioError",
    "ZeroLengthVideoError",
    "build_model_card",
    "config_from_original",
    "convert_checkpoint",
    "convert_original_state_dict",
    "export_checkpoint",
    "load_original_checkpoint",
    "push_to_hub",
]
