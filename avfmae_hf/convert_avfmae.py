# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Conversion of official AVF-MAE++ state dicts to this package's parameter names, through one explicit key mapping
table (the configuration side is in `original_config_avfmae`)."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.utils import logging


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
    "second_attn_norm0": "region_attention_norm",
    "second_attn": "region_attention",
    "third_attn_norm0": "region_to_local_attention_norm",
    "third_attn_norm1": "region_to_local_context_norm",
    "third_attn": "region_to_local_attention",
    "fourth_attn_norm0": "local_to_region_attention_norm",
    "fourth_attn_norm1": "local_to_region_context_norm",
    "fourth_attn": "local_to_region_attention",
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

# What a conversion can build: the pretraining model, the classifier, or the bare backbone (`AVFMAEModel`).
TASKS = ("pretraining", "classification", "backbone")
PRETRAINING_ONLY = re.compile(r"(decoder|decoder_audio|encoder_to_decoder|encoder_to_decoder_audio)\.|mask_token")
CLASSIFICATION_ONLY = re.compile(r"(fc_norm|head)\.")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Entries of a `torch.save` dict that can hold the model weights, in the order they are looked for.
STATE_DICT_ENTRIES = ("model", "module", "state_dict")


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
    for wrapper in STATE_DICT_ENTRIES:
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
        "backbone": AVFMAEModel,
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
        config (`AVFMAEConfig`): the configuration of the target model (e.g. from [`~original_config_avfmae.config_from_original`]).
        target_task: `"pretraining"`, `"classification"` or `"backbone"` (an [`AVFMAEModel`], no prefix); defaults to
            the checkpoint's own task.
        return_report: also return a [`ConversionReport`].
    """
    state_dict = unwrap_original_state_dict(state_dict)
    source_task = detect_original_task(state_dict)
    target_task = target_task or source_task
    if target_task not in TASKS:
        raise ValueError(f"target_task must be one of {', '.join(TASKS)}, got {target_task!r}.")
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
            target_task == "backbone" and CLASSIFICATION_ONLY.match(key)
        ):
            report.dropped.append(key)
            continue
        if len(targets) > 1 and (value.ndim == 0 or value.shape[0] % len(targets) != 0):
            raise ValueError(f"{key} of shape {tuple(value.shape)} cannot be split into {len(targets)} equal parts.")
        parts = value.chunk(len(targets), dim=0) if len(targets) > 1 else (value,)
        for target, part in zip(targets, parts, strict=True):
            if target_task == "backbone":
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


__all__ = [
    "CLASSIFICATION_TARGET",
    "ConversionReport",
    "ORIGINAL_TO_HF_KEY_MAPPING",
    "STATE_DICT_ENTRIES",
    "TASKS",
    "convert_original_state_dict",
    "detect_original_task",
    "expected_state_dict_shapes",
    "map_original_key",
    "unwrap_original_state_dict",
]
