# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Official AVF-MAE++ models described as [`AVFMAEConfig`]s: the official constructor arguments and training-script
namespaces translated to config fields, and the sizes an official state dict reveals (architecture.md §2.5)."""

import math
import re
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .configuration_avfmae import (
    MODEL_SIZES,
    AVFMAEConfig,
    model_size_name,
    num_masked_tokens,
    visible_tokens_per_region,
)
from .convert_avfmae import detect_original_task, unwrap_original_state_dict


# --------------------------------------------------------------------------------------------------------------------
# Configs from official constructor arguments and training-script namespaces
# --------------------------------------------------------------------------------------------------------------------

SUPPORTED_LOCAL_GLOBAL_SETTINGS = {
    "attn_type": "local_global",
    "lg_first_attn_type": "self",
    "lg_third_attn_type": "cross",
    "lg_attn_param_sharing_first_third": False,
    "lg_attn_param_sharing_all": False,
    "lg_no_second": False,
    "lg_no_third": False,
    "lg_classify_token_type": "region",
}


def _first(original: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if original.get(name) is not None:
            return original[name]
    return None


def _size_from_name(name: str | None) -> str:
    """The released size of an official registry name (`avit_dim768_patch16_160_a256` -> `huge`); `base` without
    a name."""
    match = re.search(r"dim(\d+)", name or "")
    if match is None:
        return "base"
    size = model_size_name(int(match.group(1)))
    if size is None:
        raise ValueError(f"Unknown official model {name!r}: registered widths are {_released_widths()}.")
    return size


def _released_widths() -> str:
    return ", ".join(f"{size['hidden_size']} = {name}" for name, size in MODEL_SIZES.items())


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _valid_mask_ratio(tower: dict[str, Any], grid: tuple[int, int, int], tube: bool) -> float:
    """The largest mask ratio not above the tower's current one that the pretraining grouping accepts (`tube`: the
    video tower, masked per time slice; otherwise the audio tower, masked over its whole grid)."""
    region = tuple(tower["region_size"]) if tube else (1, *tower["region_size"])
    unit = grid[1] * grid[2] if tube else math.prod(grid)
    start = num_masked_tokens(tower["mask_ratio"], unit)
    for num_masked in range(start, 0, -1):
        num_visible = (unit - num_masked) * (grid[0] if tube else 1)
        try:
            visible_tokens_per_region(grid, region, num_visible)
        except ValueError:
            continue
        ratio = num_masked / unit
        return ratio if num_masked_tokens(ratio, unit) == num_masked else (num_masked + 0.5) / unit
    raise ValueError(f"No mask ratio fits the region grouping of token grid {grid} and regions {region}.")


def config_from_original(original: Mapping[str, Any] | Namespace, **overrides) -> AVFMAEConfig:
    """The [`AVFMAEConfig`] of an official AVF-MAE++ model.

    `original` is either the keyword arguments of an official model constructor (`PretrainAudioVisionTransformer`,
    `AudioVisionTransformer`, or a registered entry point when a `model` name is included) or the argparse namespace
    of the official training scripts, stored under `args` in their checkpoints. Sizes missing from it come from the
    released size named by `model` (e.g. `avit_dim768_patch16_160_a256` -> `huge`). `overrides` are config fields
    that win over the translated ones (`num_labels=7`, ...).
    """
    return AVFMAEConfig(**{**config_kwargs_from_original(original), **overrides})


def config_kwargs_from_original(original: Mapping[str, Any] | Namespace) -> dict[str, Any]:
    """`AVFMAEConfig` keyword arguments for an official model (see [`config_from_original`])."""
    if isinstance(original, Namespace):
        original = vars(original)
    original = dict(original)
    for name, supported in SUPPORTED_LOCAL_GLOBAL_SETTINGS.items():
        value = original.get(name)
        if value is not None and value != supported and not (isinstance(supported, bool) and bool(value) == supported):
            raise ValueError(
                f"Official option {name}={value!r} is not supported: the released models (and this port) use "
                f"{name}={supported!r}."
            )
    name = _first(original, "model", "constructor")
    size = MODEL_SIZES[_size_from_name(name)]

    hidden_size = _first(original, "encoder_embed_dim", "embed_dim") or size["hidden_size"]
    audio_hidden_size = _first(original, "encoder_embed_dim_audio", "embed_dim_audio") or hidden_size
    num_heads = _first(original, "encoder_num_heads", "num_heads") or size["num_attention_heads"]
    audio_num_heads = _first(original, "encoder_num_heads_audio", "num_heads_audio") or num_heads
    depth = _first(original, "encoder_depth", "depth") or size["num_hidden_layers"]
    audio_depth = _first(original, "encoder_depth_audio", "depth_audio") or depth
    mlp_ratio = original.get("mlp_ratio") or 4
    decoder_hidden_size = _first(original, "decoder_embed_dim") or size["decoder_hidden_size"]
    audio_decoder_hidden_size = _first(original, "decoder_embed_dim_audio") or decoder_hidden_size
    decoder_heads = _first(original, "decoder_num_heads") or size["decoder_num_attention_heads"]
    audio_decoder_heads = _first(original, "decoder_num_heads_audio") or decoder_heads
    decoder_depth = _first(original, "decoder_depth") or 4
    audio_decoder_depth = _first(original, "decoder_depth_audio") or decoder_depth
    intermediate = tuple(_first(original, "return_intermediate_features") or size["intermediate_layer_indices"])
    if original.get("return_intermediate_features") is None and (
        len(intermediate) != decoder_depth - 1 or max(intermediate) >= depth
    ):
        # A fine-tuned model has no decoder and names no skip layers: take the last encoder layers instead.
        decoder_depth = audio_decoder_depth = min(decoder_depth, depth + 1)
        intermediate = tuple(range(depth - decoder_depth + 1, depth))

    image_size = _first(original, "img_size", "input_size") or 160
    patch_size = _first(original, "patch_size") or 16
    audio_size = _pair(_first(original, "img_size_audio") or (original.get("input_size_audio") or 256, 128))
    if "img_size_audio" not in original and original.get("num_mel_bins"):
        audio_size = (audio_size[0], original["num_mel_bins"])
    audio_patch_size = _first(original, "patch_size_audio") or patch_size
    num_frames = _first(original, "all_frames", "num_frames") or 16
    tubelet_size = _first(original, "tubelet_size") or 2

    video = {
        "hidden_size": hidden_size,
        "num_hidden_layers": depth,
        "num_attention_heads": num_heads,
        "intermediate_size": int(mlp_ratio * hidden_size),
        "image_size": image_size,
        "patch_size": patch_size,
        "num_frames": num_frames,
        "tubelet_size": tubelet_size,
        "region_size": tuple(_first(original, "lg_region_size") or (2, 5, 10)),
        "decoder_hidden_size": decoder_hidden_size,
        "decoder_num_hidden_layers": decoder_depth,
        "decoder_num_attention_heads": decoder_heads,
        "decoder_intermediate_size": int(mlp_ratio * decoder_hidden_size),
        "intermediate_layer_indices": intermediate,
    }
    audio = {
        "hidden_size": audio_hidden_size,
        "num_hidden_layers": audio_depth,
        "num_attention_heads": audio_num_heads,
        "intermediate_size": int(mlp_ratio * audio_hidden_size),
        "max_length": audio_size[0],
        "num_mel_bins": audio_size[1],
        "patch_size": audio_patch_size,
        "region_size": tuple(_first(original, "lg_region_size_audio") or (4, 4)),
        "decoder_hidden_size": audio_decoder_hidden_size,
        "decoder_num_hidden_layers": audio_decoder_depth,
        "decoder_num_attention_heads": audio_decoder_heads,
        "decoder_intermediate_size": int(mlp_ratio * audio_decoder_hidden_size),
        "intermediate_layer_indices": intermediate,
    }
    _set_mask_ratios(original, video, audio, patch_size, audio_patch_size)

    kwargs: dict[str, Any] = {
        "video_config": video,
        "audio_config": audio,
        "fusion_num_hidden_layers": _first(original, "encoder_fusion_depth", "fusion_depth") or 2,
        "fusion_num_attention_heads": _first(original, "encoder_fusion_num_heads", "fusion_num_heads") or num_heads,
        "fusion_intermediate_size": int(mlp_ratio * hidden_size),
    }
    drop_path = _first(original, "drop_path_rate", "drop_path")
    if drop_path is not None:
        kwargs["drop_path_rate"] = float(drop_path)
    if original.get("inter_contrastive_temperature") is not None:
        kwargs["contrastive_temperature"] = float(original["inter_contrastive_temperature"])
    if original.get("loss_weight") is not None:
        kwargs["contrastive_loss_weight"] = float(original["loss_weight"])
    if original.get("use_frame_diff_as_target") is not None:
        kwargs["use_frame_difference_target"] = bool(original["use_frame_diff_as_target"])
    if original.get("normlize_target") is not None:
        kwargs["norm_pix_loss"] = bool(original["normlize_target"])
    num_labels = _first(original, "num_classes", "nb_classes")
    if num_labels:
        kwargs["num_labels"] = int(num_labels)
    return kwargs


def _set_mask_ratios(original: dict, video: dict, audio: dict, patch_size: int, audio_patch_size: int) -> None:
    """Mask ratios from a pretraining namespace; a fine-tuned model has none, so the released ratios are kept when
    the geometry allows them and the largest smaller ratio that the region grouping accepts otherwise (they only
    matter for pretraining)."""
    video["mask_ratio"] = original.get("mask_ratio") or 0.9
    audio["mask_ratio"] = original.get("mask_ratio_audio") or 0.8125
    if original.get("decoder_mask_ratio") is not None:
        video["decoder_mask_ratio"] = original["decoder_mask_ratio"]
    if original.get("decoder_mask_ratio_audio") is not None:
        audio["decoder_mask_ratio"] = original["decoder_mask_ratio_audio"]
    if original.get("decoder_mask_type") is not None:
        video["decoder_masking_strategy"] = {"run_cell": "running_cell"}.get(
            original["decoder_mask_type"], original["decoder_mask_type"]
        )
    if "mask_ratio" in original and "mask_ratio_audio" in original:
        return
    side = video["image_size"] // patch_size
    video_grid = (video["num_frames"] // video["tubelet_size"], side, side)
    audio_grid = (1, audio["max_length"] // audio_patch_size, audio["num_mel_bins"] // audio_patch_size)
    video["mask_ratio"] = _valid_mask_ratio(video, video_grid, tube=True)
    audio["mask_ratio"] = _valid_mask_ratio(audio, audio_grid, tube=False)


# --------------------------------------------------------------------------------------------------------------------
# What the weights say about the model (architecture.md §2.5)
# --------------------------------------------------------------------------------------------------------------------

# Official argparse / constructor names that mean the same thing; a checkpoint's `args` replace every alias of a name
# they set (see `merge_original_kwargs`).
ORIGINAL_ALIASES = (
    ("encoder_embed_dim", "embed_dim"),
    ("encoder_embed_dim_audio", "embed_dim_audio"),
    ("encoder_depth", "depth"),
    ("encoder_depth_audio", "depth_audio"),
    ("encoder_fusion_depth", "fusion_depth"),
    ("num_classes", "nb_classes"),
    ("model", "constructor"),
)


@dataclass(frozen=True)
class OriginalArchitecture:
    """The sizes an official AVF-MAE++ state dict reveals: widths, depths, patch geometry, decoder sizes and the
    number of classes. Attention heads, input geometry and mask ratios are not in the weights."""

    task: str
    hidden_size: int
    audio_hidden_size: int
    num_hidden_layers: int
    audio_num_hidden_layers: int
    fusion_num_hidden_layers: int
    intermediate_size: int
    patch_size: int
    tubelet_size: int
    audio_patch_size: int
    num_region_tokens: int
    decoder_hidden_size: int | None = None
    audio_decoder_hidden_size: int | None = None
    decoder_num_hidden_layers: int | None = None
    audio_decoder_num_hidden_layers: int | None = None
    num_labels: int | None = None

    @property
    def size(self) -> str | None:
        """`"base"`, `"large"` or `"huge"` when the video width and depth are those of a released size."""
        return model_size_name(self.hidden_size, self.num_hidden_layers)

    def describe(self) -> str:
        return (
            f"{self.task} model, hidden size {self.hidden_size}, {self.num_hidden_layers} video / "
            f"{self.audio_num_hidden_layers} audio layers, {self.fusion_num_hidden_layers} fusion layers"
            + (f", {self.num_labels} classes" if self.num_labels is not None else "")
        )

    def original_kwargs(self, size: str | None = None) -> dict[str, Any]:
        """Official-style constructor arguments for these sizes; the attention heads (not in the weights) follow the
        registered variant of `size` (default: the one with this width)."""
        width = MODEL_SIZES[size]["hidden_size"] if size else self.hidden_size
        if model_size_name(width) is None:
            raise ValueError(
                f"Hidden size {self.hidden_size} is not one of the released sizes "
                f"({_released_widths()}), and the number of attention "
                "heads cannot be read from the weights: describe the model with the official constructor arguments "
                "(e.g. --original-config config.json)."
            )
        name = "pretrain_hicmae" if self.task == "pretraining" else "avit"
        kwargs = {
            "model": f"{name}_dim{width}_patch{self.patch_size}_160_a256",
            "encoder_embed_dim": self.hidden_size,
            "encoder_embed_dim_audio": self.audio_hidden_size,
            "encoder_depth": self.num_hidden_layers,
            "encoder_depth_audio": self.audio_num_hidden_layers,
            "encoder_fusion_depth": self.fusion_num_hidden_layers,
            "mlp_ratio": self.intermediate_size / self.hidden_size,
            "patch_size": self.patch_size,
            "tubelet_size": self.tubelet_size,
            "patch_size_audio": self.audio_patch_size,
        }
        if self.task == "pretraining":
            kwargs.update(
                decoder_embed_dim=self.decoder_hidden_size,
                decoder_embed_dim_audio=self.audio_decoder_hidden_size,
                decoder_depth=self.decoder_num_hidden_layers,
                decoder_depth_audio=self.audio_decoder_num_hidden_layers,
            )
        else:
            kwargs["num_classes"] = self.num_labels
        return kwargs


def _num_layers(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}\.blocks\.(\d+)\.")
    indices = [int(match.group(1)) for key in state_dict if (match := pattern.match(key))]
    return 1 + max(indices) if indices else 0


def describe_original_state_dict(state_dict: Mapping[str, torch.Tensor]) -> OriginalArchitecture:
    """Reads the task and sizes of an official AVF-MAE++ model from its state dict (architecture.md §2.5) and
    rejects state dicts of other architectures with a `ValueError` that says what is missing."""
    state_dict = unwrap_original_state_dict(state_dict)
    if any(key.startswith(("avfmae.", "video_decoder.", "audio_decoder.")) for key in state_dict):
        raise ValueError(
            "This state dict already uses this package's parameter names; load its folder with from_pretrained "
            "instead of converting it."
        )
    task = detect_original_task(state_dict)
    video_patch = state_dict["encoder.patch_embed.proj.weight"]
    required = {
        "encoder_audio.patch_embed.proj.weight": "an audio encoder",
        "encoder.lg_region_tokens": "local-global region tokens",
        "encoder.blocks.0.first_attn.q.weight": "local-global encoder blocks",
        "encoder_fusion.cross_attn.q.weight": "the IAV-CLM fusion module",
    }
    missing = [f"{what} ('{key}')" for key, what in required.items() if key not in state_dict]
    if missing or video_patch.ndim != 5:
        raise ValueError(
            "This is not an official AVF-MAE++ audio-visual state dict: it has no "
            + (", no ".join(missing) if missing else "3-D (tubelet) video patch embedding")
            + f". A video-only ViT / VideoMAE-style checkpoint cannot be converted (first keys: {sorted(state_dict)[:5]})."
        )
    audio_patch = state_dict["encoder_audio.patch_embed.proj.weight"]
    decoders = {}
    if task == "pretraining":
        decoders = {
            "decoder_hidden_size": state_dict["decoder.norm.weight"].shape[0],
            "audio_decoder_hidden_size": state_dict["decoder_audio.norm.weight"].shape[0],
            "decoder_num_hidden_layers": _num_layers(state_dict, "decoder"),
            "audio_decoder_num_hidden_layers": _num_layers(state_dict, "decoder_audio"),
        }
    return OriginalArchitecture(
        task=task,
        hidden_size=video_patch.shape[0],
        audio_hidden_size=audio_patch.shape[0],
        num_hidden_layers=_num_layers(state_dict, "encoder"),
        audio_num_hidden_layers=_num_layers(state_dict, "encoder_audio"),
        fusion_num_hidden_layers=_num_layers(state_dict, "encoder_fusion"),
        intermediate_size=state_dict["encoder.blocks.0.mlp.fc1.weight"].shape[0],
        patch_size=video_patch.shape[-1],
        tubelet_size=video_patch.shape[2],
        audio_patch_size=audio_patch.shape[-1],
        num_region_tokens=state_dict["encoder.lg_region_tokens"].shape[0],
        num_labels=state_dict["head.weight"].shape[0] if "head.weight" in state_dict else None,
        **decoders,
    )


def merge_original_kwargs(base: Mapping[str, Any], overrides: Mapping[str, Any] | Namespace) -> dict[str, Any]:
    """`base` official arguments updated with the non-`None` entries of `overrides` (e.g. a checkpoint's `args`);
    a name set by `overrides` also replaces its aliases in `base` (`depth` replaces `encoder_depth`)."""
    if isinstance(overrides, Namespace):
        overrides = vars(overrides)
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        for aliases in ORIGINAL_ALIASES:
            if key in aliases:
                for alias in aliases:
                    merged.pop(alias, None)
        merged[key] = value
    return merged


__all__ = [
    "ORIGINAL_ALIASES",
    "OriginalArchitecture",
    "config_from_original",
    "config_kwargs_from_original",
    "describe_original_state_dict",
    "merge_original_kwargs",
]
