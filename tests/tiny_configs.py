"""Tiny AVF-MAE++ configurations for fast tests (the official fixtures' geometry: 8 regions per tower)."""

from avfmae_hf import AVFMAEConfig


TOWER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "decoder_hidden_size": 16,
    "decoder_num_hidden_layers": 3,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 32,
    "intermediate_layer_indices": (0, 1),
}
VIDEO = {**TOWER, "image_size": 16, "patch_size": 4, "num_frames": 16, "region_size": (2, 2, 4), "mask_ratio": 0.75}
AUDIO = {**TOWER, "max_length": 32, "num_mel_bins": 16, "patch_size": 4, "region_size": (2, 2), "mask_ratio": 0.5}


def tiny_config(**overrides) -> AVFMAEConfig:
    video = {**VIDEO, **overrides.pop("video_config", {})}
    audio = {**AUDIO, **overrides.pop("audio_config", {})}
    defaults = {"fusion_num_attention_heads": 4, "fusion_intermediate_size": 64}
    if "id2label" not in overrides:
        defaults["num_labels"] = 5
    return AVFMAEConfig(video_config=video, audio_config=audio, **{**defaults, **overrides})
