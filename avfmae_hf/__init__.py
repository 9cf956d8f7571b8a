# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ for Hugging Face transformers. Importing the package registers every class with its Auto class."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoProcessor

from .configuration_avfmae import AVFMAEAudioConfig, AVFMAEConfig, AVFMAEVideoConfig
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
from .processing_avfmae import AVFMAEProcessor
from .video_processing_avfmae import AVFMAEVideoProcessor

AutoConfig.register(AVFMAEConfig.model_type, AVFMAEConfig, exist_ok=True)
AutoConfig.register(AVFMAEVideoConfig.model_type, AVFMAEVideoConfig, exist_ok=True)
AutoConfig.register(AVFMAEAudioConfig.model_type, AVFMAEAudioConfig, exist_ok=True)
AutoFeatureExtractor.register(AVFMAEConfig, AVFMAEFeatureExtractor, exist_ok=True)
# The video processor is a `BaseImageProcessor` (transformers' video processors need torchvision): it is registered
# for both image-processor backends so that AutoImageProcessor finds it whichever backend it prefers.
AutoImageProcessor.register(
    AVFMAEConfig,
    image_processor_classes={"pil": AVFMAEVideoProcessor, "torchvision": AVFMAEVideoProcessor},
    exist_ok=True,
)
AutoProcessor.register(AVFMAEConfig, AVFMAEProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "AVFMAEAudioConfig",
    "AVFMAEConfig",
    "AVFMAEFeatureExtractor",
    "AVFMAEInputError",
    "AVFMAEProcessor",
    "AVFMAEVideoConfig",
    "AVFMAEVideoProcessor",
    "AudioAlignmentError",
    "AudioTooShortError",
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
]
