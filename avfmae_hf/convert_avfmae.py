# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Conversion of official AVF-MAE++ checkpoints: configs from the official constructor arguments or training-script
namespaces, and state dicts through one explicit key mapping table."""

import math
import re
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.utils import logging

from .configuration_avfmae import PRESETS, visible_tokens_per_region


logger = logging.get_logger(__name__)

# --------------------------------------------------------------------------------------------------------------------
# The mapping table. Official key = <prefix>.<module path>.<parameter>; every row below maps an official module path
# to ours. Attention modules also rename their parameters (ATTENTION_PARAMETERS): the official q/v biases become the
# biases of separate q/v projections, and fused `kv` / `qkv` weights are split along their rows into equal chunks
# (rows [0:C] = q or k, then k, then v; there is no k bias).
# --------------------------------------------------------------------------------------------------------------------

TOWERS = {"encoder": "video", "encoder_audio": "audio"}
DECODERS = {"decoder": "video", "decoder_audio": "audio"}

LOCAL_GLOBAL_LAYER_MODULES = {
    "first_attn_norm0": "local_attention_norm",
    "first_attn": "local_attention",
    "second_attn_norm0": "messenger_attention_norm",
    "second_attn": "messenger_attention",
    "third_attn_norm0": "global_to_local_attention_norm",
    "third_attn_norm1": "global_to_local_context_norm",
    "third_attn": "global_to_local_attention",
    "fourth_attn_norm0": "local_to_messenger_attention_norm",
    "fourth_attn_norm1": "local_to_messenger_context_norm",
    "fourth_attn": "local_to_messenger_attention",
    "norm2": "mlp_norm",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}

FUSION_LAYER_MODULES = {
    "norm1": "video_branch.self_attention_norm",
    "attn": "video_branch.self_attention",
    "norm_vsa": "video_branch.self_mlp_norm",
    "mlp_vsa.fc1": "video_branch.self_mlp.fc1",
    "mlp_vsa.fc2": "video_branch.self_mlp.fc2",
    "cross_norm1": "video_branch.cross_attention_norm",
    "cross_norm2": "video_branch.cross_context_norm",
    "cross_attn": "video_branch.cross_attention",
    "norm_vcma": "video_branch.cross_mlp_norm",
    "mlp_vcma.fc1": "video_branch.cross_mlp.fc1",
    "mlp_vcma.fc2": "video_branch.cross_mlp.fc2",
    "lv1": "video_branch.self_gate",
    "lv2": "video_branch.cross_gate",
    "norm3": "video_branch.output_norm",
    "norm_new": "audio_branch.self_attention_norm",
    "attn_new": "audio_branch.self_attention",
    "norm_asa": "audio_branch.self_mlp_norm",
    "mlp_asa.fc1": "audio_branch.self_mlp.fc1",
    "mlp_asa.fc2": "audio_branch.self_mlp.fc2",
    "cross_norm1_a": "audio_branch.cross_attention_norm",
    "cross_norm2_a": "audio_branch.cross_context_norm",
    "cross_attn_a": "audio_branch.cross_attention",
    "norm_acma": "audio_branch.cross_mlp_norm",
    "mlp_acma.fc1": "audio_branch.cross_mlp.fc1",
    "mlp_acma.fc2": "audio_branch.cross_mlp.fc2",
    "la1": "audio_branch.self_gate",
    "la2": "audio_branch.cross_gate",
    "norm3_1": "audio_branch.output_norm",
}

FUSION_MODULES = {
    "Iterative_Refinement_Module.post_extract_proj": "overall_projection",
    "Iterative_Refinement_Module.layer_norm": "refinement.layernorm",
    "Iterative_Refinement_Module.conv_audio.0": "refinement.audio_projection.conv",
    "Iterative_Refinement_Module.conv_audio.1": "refinement.audio_projection.batch_norm",
    "Iterative_Refinement_Module.conv_audio.2": "refinement.audio_projection.activation",
    "Iterative_Refinement_Module.conv_video.0": "refinement.video_projection.conv",
    "Iterative_Refinement_Module.conv_video.1": "refinement.video_projection.batch_norm",
    "Iterative_Refinement_Module.conv_video.2": "refinement.video_projection.activation",
    "norm": "video_aggregation.attention_norm",
    "vadaptiveinteraction": "video_aggregation.attention",
    "norm_att_v": "video_aggregation.mlp_norm",
    "mlp_att_v.fc1": "video_aggregation.mlp.fc1",
    "mlp_att_v.fc2": "video_aggregation.mlp.fc2",
    "vselectfusion": "video_aggregation.stage_gate",
    "norm_audio": "audio_aggregation.attention_norm",
    "aadaptiveinteraction": "audio_aggregation.attention",
    "norm_att_a": "audio_aggregation.mlp_norm",
    "mlp_att_a.fc1": "audio_aggregation.mlp.fc1",
    "mlp_att_a.fc2": "audio_aggregation.mlp.fc2",
    "aselectfusion": "audio_aggregation.stage_gate",
    "cross_norm_1": "video_overall_norm",
    "cross_norm_3": "audio_overall_norm",
    "cross_norm_2": "overall_context_norm",
    "cross_attn": "overall_attention",
    "norm_att_v_IR": "video_output_mlp_norm",
    "mlp_att_video_IR.fc1": "video_output_mlp.fc1",
    "mlp_att_video_IR.fc2": "video_output_mlp.fc2",
    "norm_att_a_IR": "audio_output_mlp_norm",
    "mlp_att_audio_IR.fc1": "audio_output_mlp.fc1",
    "mlp_att_audio_IR.fc2": "audio_output_mlp.fc2",
}

DECODER_LAYER_MODULES = {
    "cross_norm1": "cross_attention_norm",
    "cross_norm2": "cross_context_norm",
    "cross_attn": "cross_attention",
    "norm1": "attention_norm",
    "attn": "attention",
    "norm2": "mlp_norm",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}

ATTENTION_MODULES = {
    "first_attn",
    "second_attn",
    "third_attn",
    "fourth_attn",
    "attn",
    "attn_new",
    "cross_attn",
    "cross_attn_a",
    "vadaptiveinteraction",
    "aadaptiveinteraction",
}

ATTENTION_PARAMETERS = {
    "q_bias": ("q_proj.bias",),
    "v_bias": ("v_proj.bias",),
    "q.weight": ("q_proj.weight",),
    "kv.weight": ("k_proj.weight", "v_proj.weight"),
    "qkv.weight": ("q_proj.weight", "k_proj.weight", "v_proj.weight"),
    "proj.weight": ("o_proj.weight",),
    "proj.bias": ("o_proj.bias",),
}

PLAIN_PARAMETERS = r"(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)"


def _module_rows(official: str, ours: str) -> list[tuple[str, tuple[str, ...]]]:
    """Rows for one module: attention modules map each parameter (with splits), other modules keep theirs."""
    if official.split(".")[-1] in ATTENTION_MODULES:
        return [
            (rf"{official}\.{re.escape(parameter)}", tuple(f"{ours}.{target}" for target in targets))
            for parameter, targets in ATTENTION_PARAMETERS.items()
        ]
    return [(rf"{official}\.{PLAIN_PARAMETERS}", (rf"{ours}.\g<param>",))]


def _build_key_mapping() -> list[tuple[re.Pattern, tuple[str, ...]]]:
    rows: list[tuple[str, tuple[str, ...]]] = []
    for prefix, tower in TOWERS.items():
        rows.append((rf"{prefix}\.lg_region_tokens", (f"avfmae.{tower}_encoder.region_tokens",)))
        rows += _module_rows(rf"{prefix}\.patch_embed\.proj", f"avfmae.{tower}_embeddings.projection")
        rows += _module_rows(rf"{prefix}\.norm", f"avfmae.{tower}_encoder.layernorm")
        for official, ours in LOCAL_GLOBAL_LAYER_MODULES.items():
            rows += _module_rows(
                rf"{prefix}\.blocks\.(?P<layer>\d+)\.{re.escape(official)}",
                rf"avfmae.{tower}_encoder.layers.\g<layer>.{ours}",
            )
    for official, ours in FUSION_LAYER_MODULES.items():
        rows += _module_rows(
            rf"encoder_fusion\.blocks\.(?P<layer>\d+)\.{re.escape(official)}",
            rf"avfmae.fusion.layers.\g<layer>.{ours}",
        )
    for official, ours in FUSION_MODULES.items():
        rows += _module_rows(rf"encoder_fusion\.{re.escape(official)}", f"avfmae.fusion.{ours}")
    for prefix, tower in DECODERS.items():
        suffix = "" if tower == "video" else "_audio"
        rows.append((rf"mask_token{suffix}", (f"{tower}_decoder.mask_token",)))
        rows.append((rf"encoder_to_decoder{suffix}\.weight", (f"{tower}_decoder.encoder_to_decoder.weight",)))
        rows += _module_rows(rf"{prefix}\.norm", f"{tower}_decoder.layernorm")
        rows += _module_rows(rf"{prefix}\.head", f"{tower}_decoder.head")
        for official, ours in DECODER_LAYER_MODULES.items():
            rows += _module_rows(
                rf"{prefix}\.blocks\.(?P<layer>\d+)\.{re.escape(official)}",
                rf"{tower}_decoder.layers.\g<layer>.{ours}",
            )
    rows += [
        (r"layer_weights_video", ("avfmae.video_layer_weights",)),
        (r"layer_weights_audio", ("avfmae.audio_layer_weights",)),
    ]
    rows += _module_rows(r"fc_norm", "fc_norm")
    rows += _module_rows(r"head", "classifier")
    return [(re.compile(pattern), targets) for pattern, targets in rows]


ORIGINAL_TO_HF_KEY_MAPPING = _build_key_mapping()

PRETRAINING_ONLY = re.compile(r"(decoder|decoder_audio|encoder_to_decoder|encoder_to_decoder_audio)\.|mask_token")
CLASSIFICATION_ONLY = re.compile(r"(fc_norm|head)\.")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def map_original_key(key: str) -> tuple[str, ...] | None:
    """Our key(s) for one official key (several when a fused projection is split), or None if no row matches."""
    for pattern, targets in ORIGINAL_TO_HF_KEY_MAPPING:
        match = pattern.fullmatch(key)
        if match:
            return tuple(match.expand(target) for target in targets)
    return None


def unwrap_original_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model state dict inside an official checkpoint: unwraps `{"model": ...}` / `{"module": ...}` and strips
    DDP (`module.`) and `torch.compile` (`_orig_mod.`) prefixes."""
    state_dict = checkpoint
    for wrapper in ("model", "module", "state_dict"):
        if isinstance(state_dict.get(wrapper), Mapping):
            state_dict = state_dict[wrapper]
            break
    unwrapped = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"Entry {key!r} of the state dict is a {type(value).__name__}, not a tensor.")
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        unwrapped[key] = value
    return unwrapped


def detect_original_task(state_dict: Mapping[str, torch.Tensor]) -> str:
    """`"pretraining"` or `"classification"`, from the keys of an official state dict."""
    if "encoder.patch_embed.proj.weight" not in state_dict:
        raise ValueError(
            "This is not an official AVF-MAE++ state dict: it has no 'encoder.patch_embed.proj.weight' key "
            f"(first keys: {sorted(state_dict)[:5]})."
        )
    if any(key.startswith(("decoder.", "decoder_audio.")) for key in state_dict):
        return "pretraining"
    if "head.weight" in state_dict or "fc_norm.weight" in state_dict:
        return "classification"
    raise ValueError("Cannot tell whether this state dict is a pretraining or a classification model.")


@dataclass
class ConversionReport:
    """What a conversion did: `mapped` official keys, `dropped` official keys that the target model has no place
    for (the decoders when a pretraining checkpoint becomes a classifier), `initialized` parameters of ours with no
    official source (a new classification head), and the parameter counts."""

    source_task: str
    target_task: str
    mapped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)
    num_official_values: int = 0
    num_converted_values: int = 0

    def summary(self) -> str:
        lines = [
            f"{self.source_task} checkpoint -> {self.target_task} model: {len(self.mapped)} official keys mapped "
            f"({self.num_official_values:,} values -> {self.num_converted_values:,})."
        ]
        if self.dropped:
            lines.append(f"{len(self.dropped)} official keys not used by the target: {_abbreviate(self.dropped)}")
        if self.initialized:
            lines.append(f"{len(self.initialized)} parameters newly initialised: {_abbreviate(self.initialized)}")
        return "\n".join(lines)


def _abbreviate(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def expected_state_dict_shapes(config, target_task: str) -> dict[str, torch.Size]:
    """Keys and shapes of the state dict of our model for `target_task`, built on the meta device."""
    from .modeling_avfmae import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEModel

    model_class = {
        "pretraining": AVFMAEForPreTraining,
        "classification": AVFMAEForVideoClassification,
        "base": AVFMAEModel,
    }[target_task]
    with torch.device("meta"):
        model = model_class(config)
    return {key: value.shape for key, value in model.state_dict().items()}


def convert_original_state_dict(
    state_dict: Mapping[str, Any],
    config,
    *,
    target_task: str | None = None,
    return_report: bool = False,
) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], ConversionReport]:
    """Converts an official AVF-MAE++ state dict to this package's parameter names.

    Every official key must match a row of `ORIGINAL_TO_HF_KEY_MAPPING` and every parameter and persistent buffer of
    the target model must be filled, with matching shapes; otherwise a `ValueError` lists the offending keys. The one
    allowed mismatch is a pretraining checkpoint converted for classification (`target_task="classification"`): the
    decoders are dropped and the classifier head (`fc_norm`, `classifier`, layer weights) is left for the model to
    initialise, as transformers does when loading a pretraining checkpoint into a task model; the report lists both.

    Args:
        state_dict: the official state dict, or a checkpoint dict wrapping it (`{"model": ...}`), with or without
            `module.` / `_orig_mod.` prefixes.
        config (`AVFMAEConfig`): the configuration of the target model (e.g. from `AVFMAEConfig.from_original`).
        target_task: `"pretraining"`, `"classification"` or `"base"` (an [`AVFMAEModel`], no prefix); defaults to
            the checkpoint's own task.
        return_report: also return a [`ConversionReport`].
    """
    state_dict = unwrap_original_state_dict(state_dict)
    source_task = detect_original_task(state_dict)
    target_task = target_task or source_task
    if target_task not in ("pretraining", "classification", "base"):
        raise ValueError(f"target_task must be 'pretraining', 'classification' or 'base', got {target_task!r}.")
    if source_task == "classification" and target_task == "pretraining":
        raise ValueError(
            "A fine-tuned (classification) checkpoint has no decoders; it cannot become a pretraining model."
        )

    report = ConversionReport(source_task=source_task, target_task=target_task)
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        targets = map_original_key(key)
        if targets is None:
            unknown.append(key)
            continue
        report.num_official_values += value.numel()
        if (target_task != "pretraining" and PRETRAINING_ONLY.match(key)) or (
            target_task == "base" and CLASSIFICATION_ONLY.match(key)
        ):
            report.dropped.append(key)
            continue
        if len(targets) > 1 and (value.ndim == 0 or value.shape[0] % len(targets) != 0):
            raise ValueError(f"{key} of shape {tuple(value.shape)} cannot be split into {len(targets)} equal parts.")
        parts = value.chunk(len(targets), dim=0) if len(targets) > 1 else (value,)
        for target, part in zip(targets, parts, strict=True):
            if target_task == "base":
                target = target.removeprefix("avfmae.")
            converted[target] = part.contiguous()
        report.mapped.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} official keys have no mapping (not an AVF-MAE++ checkpoint?): {unknown}")

    expected = expected_state_dict_shapes(config, target_task)
    unexpected = sorted(set(converted) - set(expected))
    if unexpected:
        raise ValueError(
            f"{len(unexpected)} converted keys do not exist in the {target_task} model built from this config "
            f"(wrong size or task?): {unexpected[:20]}"
        )
    mismatched = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key])}"
        for key in converted
        if converted[key].shape != expected[key]
    ]
    if mismatched:
        raise ValueError(f"{len(mismatched)} shapes differ from the config (wrong size?): {mismatched[:20]}")
    missing = sorted(set(expected) - set(converted))
    allowed_missing = source_task == "pretraining" and target_task != "pretraining"
    if missing and not (allowed_missing and all(CLASSIFICATION_TARGET.match(key) for key in missing)):
        raise ValueError(f"{len(missing)} parameters of the {target_task} model have no official source: {missing}")
    report.initialized = missing
    report.num_converted_values = sum(value.numel() for value in converted.values())
    if report.dropped or report.initialized:
        logger.warning(report.summary())
    return (converted, report) if return_report else converted


CLASSIFICATION_TARGET = re.compile(r"(fc_norm|classifier)\.|(avfmae\.)?(video|audio)_layer_weights")


# --------------------------------------------------------------------------------------------------------------------
# Configs from official constructor arguments and training-script namespaces
# --------------------------------------------------------------------------------------------------------------------

REGISTERED_WIDTHS = {512: "base", 640: "large", 768: "huge"}
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


def _preset_from_name(name: str | None) -> str:
    match = re.search(r"dim(\d+)", name or "")
    if match is None:
        return "base"
    width = int(match.group(1))
    if width not in REGISTERED_WIDTHS:
        raise ValueError(f"Unknown official model {name!r}: registered widths are {sorted(REGISTERED_WIDTHS)}.")
    return REGISTERED_WIDTHS[width]


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _valid_mask_ratio(tower: dict[str, Any], grid: tuple[int, int, int], tube: bool) -> float:
    """The largest mask ratio not above the tower's current one that the pretraining grouping accepts (`tube`: the
    video tower, masked per time slice; otherwise the audio tower, masked over its whole grid)."""
    region = tuple(tower["region_size"]) if tube else (1, *tower["region_size"])
    unit = grid[1] * grid[2] if tube else math.prod(grid)
    start = int(tower["mask_ratio"] * unit)
    for num_masked in range(start, 0, -1):
        num_visible = (unit - num_masked) * (grid[0] if tube else 1)
        try:
            visible_tokens_per_region(grid, region, num_visible)
        except ValueError:
            continue
        ratio = num_masked / unit
        return ratio if int(ratio * unit) == num_masked else (num_masked + 0.5) / unit
    raise ValueError(f"No mask ratio fits the region grouping of token grid {grid} and regions {region}.")


def config_kwargs_from_original(original: Mapping[str, Any] | Namespace) -> dict[str, Any]:
    """`AVFMAEConfig` keyword arguments for an official model (see `AVFMAEConfig.from_original`)."""
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
    preset = PRESETS[_preset_from_name(name)]

    hidden_size = _first(original, "encoder_embed_dim", "embed_dim") or preset["hidden_size"]
    audio_hidden_size = _first(original, "encoder_embed_dim_audio", "embed_dim_audio") or hidden_size
    num_heads = _first(original, "encoder_num_heads", "num_heads") or preset["num_attention_heads"]
    audio_num_heads = _first(original, "encoder_num_heads_audio", "num_heads_audio") or num_heads
    depth = _first(original, "encoder_depth", "depth") or preset["num_hidden_layers"]
    audio_depth = _first(original, "encoder_depth_audio", "depth_audio") or depth
    mlp_ratio = original.get("mlp_ratio") or 4
    decoder_hidden_size = _first(original, "decoder_embed_dim") or preset["decoder_hidden_size"]
    audio_decoder_hidden_size = _first(original, "decoder_embed_dim_audio") or decoder_hidden_size
    decoder_heads = _first(original, "decoder_num_heads") or preset["decoder_num_attention_heads"]
    audio_decoder_heads = _first(original, "decoder_num_heads_audio") or decoder_heads
    decoder_depth = _first(original, "decoder_depth") or 4
    audio_decoder_depth = _first(original, "decoder_depth_audio") or decoder_depth
    intermediate = tuple(_first(original, "return_intermediate_features") or preset["intermediate_layer_indices"])
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
        name = REGISTERED_WIDTHS.get(self.hidden_size)
        return name if name and PRESETS[name]["num_hidden_layers"] == self.num_hidden_layers else None

    def describe(self) -> str:
        return (
            f"{self.task} model, hidden size {self.hidden_size}, {self.num_hidden_layers} video / "
            f"{self.audio_num_hidden_layers} audio layers, {self.fusion_num_hidden_layers} fusion layers"
            + (f", {self.num_labels} classes" if self.num_labels is not None else "")
        )

    def original_kwargs(self, size: str | None = None) -> dict[str, Any]:
        """Official-style constructor arguments for these sizes; the attention heads (not in the weights) follow the
        registered variant of `size` (default: the one with this width)."""
        width = PRESETS[size]["hidden_size"] if size else self.hidden_size
        if width not in REGISTERED_WIDTHS:
            raise ValueError(
                f"Hidden size {self.hidden_size} is not one of the released sizes "
                f"({', '.join(f'{w} = {n}' for w, n in REGISTERED_WIDTHS.items())}), and the number of attention "
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


# --------------------------------------------------------------------------------------------------------------------
# Label orders of the official fine-tuning datasets (architecture.md §10.4)
# --------------------------------------------------------------------------------------------------------------------

# Class counts the official fine-tuning code accepts per `--data_set` (the first is its default).
OFFICIAL_DATASET_NUM_LABELS = {
    "MAFW": (11, 43),
    "DFEW": (7,),
    "CREMA-D": (6, 4),
    "RAVDESS": (8,),
    "MSP-IMPROV": (4,),
    "IEMOCAP": (4,),
    "MER2023": (6,),
    "MER24-LABELED": (6,),
    "AVCAFFE": (5,),
}
# Label names in index order, where the official release states them; the other datasets are read as integer
# labels from list files, so their names are not known.
OFFICIAL_LABEL_ORDERS = {
    ("MAFW", 11): (
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    ),
    ("CREMA-D", 6): ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"),
    ("CREMA-D", 4): ("ANG", "HAP", "NEU", "SAD"),
    ("MER24-LABELED", 6): ("worried", "happy", "neutral", "angry", "surprise", "sad"),
    ("MSP-IMPROV", 4): ("A", "H", "N", "S"),
}
_DATASET_ALIASES = {"MER24": "MER24-LABELED"}


def official_dataset_name(name: str) -> str:
    """The official `--data_set` spelling of a dataset name (case, dashes and underscores are ignored)."""

    def simplify(text: str) -> str:
        return re.sub(r"[^A-Z0-9]", "", text.upper())

    known = {simplify(dataset): dataset for dataset in OFFICIAL_DATASET_NUM_LABELS}
    known.update({simplify(alias): dataset for alias, dataset in _DATASET_ALIASES.items()})
    if simplify(name) not in known:
        raise ValueError(
            f"Unknown dataset {name!r}; the official fine-tuning code supports {', '.join(OFFICIAL_DATASET_NUM_LABELS)}."
        )
    return known[simplify(name)]


def dataset_id2label(name: str, num_labels: int | None = None) -> dict[int, str]:
    """The official label order of a fine-tuning dataset, as `id2label`.

    `num_labels` picks a variant (CREMA-D 6 or 4 classes, MAFW 11 or 43) and defaults to the dataset's usual count.
    Raises a `ValueError` for a class count the official code does not use, and for datasets whose label names the
    release does not state (it reads integer labels from list files): pass `id2label` for those rather than guess.
    """
    dataset = official_dataset_name(name)
    counts = OFFICIAL_DATASET_NUM_LABELS[dataset]
    num_labels = counts[0] if num_labels is None else num_labels
    if num_labels not in counts:
        raise ValueError(
            f"The official code trains {dataset} with {' or '.join(map(str, counts))} classes, not {num_labels}."
        )
    order = OFFICIAL_LABEL_ORDERS.get((dataset, num_labels))
    if order is None:
        raise ValueError(
            f"The official release reads {dataset} ({num_labels} classes) as integer labels from its list files and "
            f"does not state their names: pass id2label (e.g. --id2label name0,name1,...) with the {num_labels} "
            "names in the order of your list files."
        )
    return dict(enumerate(order))


__all__ = [
    "ConversionReport",
    "OFFICIAL_DATASET_NUM_LABELS",
    "OFFICIAL_LABEL_ORDERS",
    "ORIGINAL_TO_HF_KEY_MAPPING",
    "OriginalArchitecture",
    "config_kwargs_from_original",
    "convert_original_state_dict",
    "dataset_id2label",
    "describe_original_state_dict",
    "detect_original_task",
    "map_original_key",
    "merge_original_kwargs",
    "official_dataset_name",
    "unwrap_original_state_dict",
]
