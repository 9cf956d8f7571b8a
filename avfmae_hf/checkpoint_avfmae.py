# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Official AVF-MAE++ checkpoint files to Hugging Face folders: safe loading of `.pth` pickles and `.safetensors`,
the configuration from the weights (and the checkpoint's training arguments), the labels, conversion, verification
of the saved folder, and publishing."""

import contextlib
import json
import os
import pickle
import re
import tempfile
import zipfile
from argparse import Namespace
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import EvalResult
from safetensors import SafetensorError, safe_open
from transformers.utils import logging

from .configuration_avfmae import MODEL_SIZES, AVFMAEConfig
from .convert_avfmae import (
    STATE_DICT_ENTRIES,
    ConversionReport,
    convert_original_state_dict,
    unwrap_original_state_dict,
)
from .hub_avfmae import (
    DEFAULT_MAX_SHARD_SIZE,
    build_model_card,
    staged_directory,
    upload_folder_to_hub,
    write_checkpoint_files,
)
from .labels_avfmae import official_dataset_name, resolve_labels
from .modeling_avfmae import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEPreTrainedModel
from .original_config_avfmae import (
    OriginalArchitecture,
    config_from_original,
    describe_original_state_dict,
    merge_original_kwargs,
)
from .processing_avfmae import AVFMAEProcessor


logger = logging.get_logger(__name__)

MODEL_CLASSES = {"pretraining": AVFMAEForPreTraining, "classification": AVFMAEForVideoClassification}
REFERENCE_TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated, corrupt, of another format, or holding Python objects
    outside the allow-list of safe loading."""


class VerificationError(ValueError):
    """The converted model does not reproduce what it should; carries both reports."""

    def __init__(self, report: ConversionReport, verification: "VerificationReport"):
        self.report, self.verification = report, verification
        failed = [name for name, ok, _ in verification.checks if not ok]
        super().__init__(f"Verification failed: {', '.join(failed) or 'nothing was checked'}.")


# --------------------------------------------------------------------------------------------------------------------
# Safe loading
# --------------------------------------------------------------------------------------------------------------------


def safe_globals() -> list:
    """What an official checkpoint may contain besides tensors and plain Python values: the training arguments
    (`argparse.Namespace`) and numpy scalars / dtypes / small arrays inside them, under their numpy 2 and numpy 1
    names. `torch.load(weights_only=True)` refuses everything else."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [Namespace, np.dtype, np.ndarray, core.scalar, core._reconstruct]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        allowed += [(core.scalar, f"{module}.scalar"), (core._reconstruct, f"{module}._reconstruct")]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return allowed


def _allowed_names() -> set[str]:
    return {
        entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"
        for entry in safe_globals()
    }


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (the config's strict type checks reject numpy ints)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


@dataclass
class OriginalCheckpoint:
    """The parts of an official checkpoint file that conversion uses.

    Attributes:
        path: the file.
        state_dict: the model weights, official key names, wrappers and `module.` / `_orig_mod.` prefixes removed.
        args: the training script's arguments (`argparse.Namespace`, numpy values made plain), when stored.
        epoch: the stored epoch, when present.
        dropped: top-level entries that were not kept (optimizer and loss-scaler state, EMA weights, ...).
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    args: Namespace | None = None
    epoch: Any = None
    dropped: list[str] = field(default_factory=list)


def _torch_load(path: Path, unsafe_pickle: bool) -> Any:
    # Zip-format files (torch >= 1.6) are memory-mapped: tensors are read from disk on first use, so a 7 GB file
    # with optimizer state costs little memory. Legacy files are read whole.
    mmap = zipfile.is_zipfile(path)
    try:
        if unsafe_pickle:
            logger.warning(
                f"Loading {path} with unrestricted unpickling (unsafe_pickle): a malicious file can run arbitrary "
                "code. Use this only for files from a source you trust."
            )
            return torch.load(path, map_location="cpu", mmap=mmap, weights_only=False)
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.findall(r"Unsupported global: GLOBAL (\S+)", str(error))
        if not refused:
            raise CheckpointError(
                f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {error}"
            ) from error
        with contextlib.suppress(Exception):  # lists every refused object, not only the first (zip files only)
            refused = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - _allowed_names())
        raise CheckpointError(
            f"{path} contains Python objects that safe loading does not allow ({', '.join(refused)}); official "
            "checkpoints hold only tensors, argparse.Namespace and numpy values. If you trust the file, load it with "
            "unsafe_pickle=True (--unsafe-pickle), which can run arbitrary code."
        ) from None
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {type(error).__name__}: {error}"
        ) from error


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(path, framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from None


def load_original_checkpoint(path: str | os.PathLike, *, unsafe_pickle: bool = False) -> OriginalCheckpoint:
    """Reads an official AVF-MAE++ checkpoint without running code from it.

    `.safetensors` files are read with safetensors. Anything else goes through `torch.load(weights_only=True)`
    (memory-mapped when the file is in zip format) with an explicit allow-list ([`safe_globals`]) for the
    `argparse.Namespace` of the training arguments and the numpy values inside it; any other Python object raises a
    [`CheckpointError`] naming it. `unsafe_pickle=True` lifts the restriction, with a logged warning, for files from a
    trusted source only.

    The official `torch.save` dict (`model`, `optimizer`, `epoch`, `scaler`, `args`, architecture.md §12) and bare
    state dicts are accepted; optimizer, scaler and EMA state are dropped, `args` is kept.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    if path.suffix == ".safetensors":
        return OriginalCheckpoint(path=path, state_dict=unwrap_original_state_dict(_load_safetensors(path)))
    loaded = _torch_load(path, unsafe_pickle)
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a checkpoint dict or a state dict.")
    wrapper = next((key for key in STATE_DICT_ENTRIES if isinstance(loaded.get(key), Mapping)), None)
    if wrapper is None and not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise CheckpointError(
            f"{path} has no model weights: expected a state dict or a dict with a 'model' entry, found the entries "
            f"{sorted(map(str, loaded))[:10]}."
        )
    args = loaded.get("args") if wrapper else None
    if isinstance(args, Mapping):
        args = Namespace(**args)
    if args is not None and not isinstance(args, Namespace):
        raise CheckpointError(f"{path}: 'args' is a {type(args).__name__}, expected an argparse.Namespace.")
    if args is not None:
        args = Namespace(**{key: _plain(value) for key, value in vars(args).items()})
    dropped = sorted(str(key) for key in loaded if key not in (wrapper, "args", "epoch")) if wrapper else []
    return OriginalCheckpoint(
        path=path,
        state_dict=unwrap_original_state_dict(loaded[wrapper] if wrapper else loaded),
        args=args,
        epoch=_plain(loaded.get("epoch")) if wrapper else None,
        dropped=dropped,
    )


# --------------------------------------------------------------------------------------------------------------------
# Configuration and labels
# --------------------------------------------------------------------------------------------------------------------


def read_original_config(path: str | os.PathLike) -> dict[str, Any]:
    """Official constructor arguments from a JSON file: a flat mapping, or a description with `constructor_kwargs`
    (as the reference fixtures store them)."""
    description = json.loads(Path(path).read_text())
    if not isinstance(description, dict):
        raise ValueError(f"{path} must hold a JSON object of official constructor arguments.")
    return description.get("constructor_kwargs", description)


def build_config(
    architecture: OriginalArchitecture,
    *,
    args: Namespace | None = None,
    size: str = "auto",
    original_config: Mapping[str, Any] | None = None,
    id2label: Mapping[int, str] | None = None,
) -> AVFMAEConfig:
    """The configuration of a converted checkpoint.

    With `size="auto"` the widths, depths, patch sizes, decoder sizes and class count come from the weights
    (`architecture`, architecture.md §2.5) and everything the weights cannot show (attention heads, intermediate
    layers) from the released size with that width; a named `size` must match the weights. The checkpoint's training
    arguments `args`, when present, win for what they specify. `original_config` (official constructor arguments)
    describes models of other sizes, such as the tiny reference fixtures, and replaces the detection.
    """
    overrides = {"id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    if original_config is not None:
        if size != "auto":
            raise ValueError("Give either a size or the official constructor arguments (original_config), not both.")
        return config_from_original(merge_original_kwargs(vars(args) if args else {}, original_config), **overrides)
    if size not in ("auto", *MODEL_SIZES):
        raise ValueError(f"Unknown size {size!r}; choose auto, {', '.join(MODEL_SIZES)}.")
    if size != "auto":
        released = MODEL_SIZES[size]
        expected = (released["hidden_size"], released["num_hidden_layers"], released["num_hidden_layers"])
        found = (architecture.hidden_size, architecture.num_hidden_layers, architecture.audio_num_hidden_layers)
        if found != expected:
            detected = f" (that is the {architecture.size} size)" if architecture.size else ""
            raise ValueError(
                f"Size {size!r} has hidden size {expected[0]} and {expected[1]} video / {expected[2]} audio layers, "
                f"but the checkpoint has hidden size {found[0]} and {found[1]} video / {found[2]} audio layers"
                f"{detected}. Use size 'auto' to read the size from the weights."
            )
    kwargs = architecture.original_kwargs(None if size == "auto" else size)
    return config_from_original(merge_original_kwargs(kwargs, args or {}), **overrides)


def classifier_labels(
    architecture: OriginalArchitecture,
    task: str,
    *,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | None = None,
    dataset: str | None = None,
    args: Namespace | None = None,
) -> dict[int, str] | None:
    """The `id2label` of the converted model (`None` for pretraining): [`~labels_avfmae.resolve_labels`] with the
    checkpoint's classification head and the dataset named by its training arguments (`data_set`) as further
    sources."""
    given = {"num_labels": num_labels, "id2label": id2label, "dataset": dataset}
    if task == "pretraining":
        if any(value is not None for value in given.values()):
            names = ", ".join(name for name, value in given.items() if value is not None)
            raise ValueError(f"{names} describe a classifier; a pretraining model has no labels.")
        return None
    return resolve_labels(
        id2label=id2label,
        num_labels=num_labels,
        dataset=dataset,
        existing_labels=architecture.num_labels,
        default_dataset=getattr(args, "data_set", None),
    )


# --------------------------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class VerificationReport:
    """Checks run on a saved folder: `(name, passed, detail)` each, and the reference tensors not compared."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(passed for _, passed, _ in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append((name, passed, detail))

    def summary(self) -> str:
        lines = [f"{'ok  ' if passed else 'FAIL'} {name}: {detail}" for name, passed, detail in self.checks]
        if self.not_compared:
            lines.append(f"     reference tensors inside the model, not compared: {', '.join(self.not_compared)}")
        return "\n".join(lines)


def reference_outputs(model: AVFMAEPreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Runs `model` on inputs in the official layout (`video` `(B, C, T, H, W)`, `audio`, and for pretraining the
    masks `mask`, `mask_audio`, `decode_mask`, `decode_mask_audio`) and names its outputs as the official forward
    and engine do (`recon_video`, `logits`, `encoder.out`, ...; tests/fixtures/official/README.md)."""
    video = inputs["video"].permute(0, 2, 1, 3, 4)  # official (B, C, T, H, W) -> ours (B, T, C, H, W)
    # the fused tokens are the backbone's outputs inside the model's own forward
    backbone_outputs = []
    handle = model.avfmae.register_forward_hook(lambda module, args, output: backbone_outputs.append(output))
    try:
        return _named_reference_outputs(model, inputs, video, backbone_outputs)
    finally:
        handle.remove()


def _named_reference_outputs(
    model: AVFMAEPreTrainedModel, inputs: Mapping[str, torch.Tensor], video: torch.Tensor, backbone_outputs: list
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        if isinstance(model, AVFMAEForPreTraining):
            outputs = model(
                video,
                inputs["audio"],
                video_bool_masked_pos=inputs["mask"],
                audio_bool_masked_pos=inputs["mask_audio"],
                video_decoder_bool_masked_pos=inputs["decode_mask"],
                audio_decoder_bool_masked_pos=inputs["decode_mask_audio"],
            )
            backbone = backbone_outputs[0]
            named = {
                "fusion.out.video": backbone.video_last_hidden_state,
                "fusion.out.audio": backbone.audio_last_hidden_state,
                "recon_video": outputs.video_logits,
                "recon_audio": outputs.audio_logits,
                "target_video": outputs.video_targets,
                "target_audio": outputs.audio_targets,
                "loss_video": outputs.video_loss,
                "loss_audio": outputs.audio_loss,
                "loss_hcmcl": outputs.contrastive_loss,
                "loss_total": outputs.loss,
                "encoder.out": outputs.video_hidden_states[-1],
                "encoder_audio.out": outputs.audio_hidden_states[-1],
            }
            layers = zip(
                model.config.video_config.intermediate_layer_indices,
                model.config.audio_config.intermediate_layer_indices,
                strict=True,
            )
            for position, (video_layer, audio_layer) in enumerate(layers):
                named[f"encoder.inter.{position}"] = outputs.video_hidden_states[video_layer]
                named[f"encoder_audio.inter.{position}"] = outputs.audio_hidden_states[audio_layer]
                named[f"logits_per_video.{position}"] = outputs.contrastive_logits[position]
                named[f"logits_per_audio.{position}"] = outputs.contrastive_logits[position].T
            return named
        outputs = model(video, inputs.get("audio"), output_hidden_states=True)
        backbone = backbone_outputs[0]
    named = {
        "logits": outputs.logits,
        "feature": outputs.pooler_output,
        "encoder.out": torch.stack(outputs.video_hidden_states, dim=2),  # official (B, R, L, C)
        "fusion.out.video": backbone.video_last_hidden_state,
    }
    if model.config.use_audio:
        named["encoder_audio.out"] = torch.stack(outputs.audio_hidden_states, dim=2)
        named["fusion.out.audio"] = backbone.audio_last_hidden_state
        named["fusion.out.overall"] = backbone.overall_token
    return named


def compare_with_reference(
    model: AVFMAEPreTrainedModel, reference_dir: str | os.PathLike, report: VerificationReport
) -> None:
    """Adds one check per reference tensor that `model` produces (atol = rtol = 1e-5) to `report`."""
    from safetensors.torch import load_file

    reference_dir = Path(reference_dir)
    paths = [reference_dir / "inputs.safetensors", reference_dir / "outputs.safetensors"]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"The reference folder needs inputs.safetensors and outputs.safetensors: {missing}")
    inputs, expected = (load_file(path) for path in paths)
    try:
        actual = reference_outputs(model, inputs)
    except (KeyError, ValueError, RuntimeError) as error:
        report.add("reference", False, f"the reference inputs do not fit this model: {type(error).__name__}: {error}")
        return
    report.not_compared = sorted(set(expected) - set(actual))
    compared = sorted(set(expected) & set(actual))
    if not compared:
        report.add("reference", False, f"the reference holds none of this model's outputs ({sorted(expected)[:5]})")
    for name in compared:
        value, reference = actual[name].float(), expected[name].float()
        if value.shape != reference.shape:
            report.add(f"reference {name}", False, f"shape {tuple(value.shape)} vs {tuple(reference.shape)}")
            continue
        difference = (value - reference).abs().max().item() if value.numel() else 0.0
        passed = torch.allclose(value, reference, **REFERENCE_TOLERANCE)
        report.add(f"reference {name}", passed, f"max abs difference {difference:.2e}")


def _finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return all(_finite(item) for item in value)
    return True


def random_inputs(config: AVFMAEConfig, batch_size: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random `pixel_values` (and `audio_values`) of the shapes `config` expects."""
    generator = torch.Generator().manual_seed(seed)
    video, audio = config.video_config, config.audio_config
    shape = (batch_size, video.num_frames, video.num_channels, video.image_size, video.image_size)
    inputs = {"pixel_values": torch.randn(shape, generator=generator)}
    if config.use_audio:
        inputs["audio_values"] = torch.randn(batch_size, 1, audio.max_length, audio.num_mel_bins, generator=generator)
    return inputs


def verify_export(
    model: AVFMAEPreTrainedModel, folder: str | os.PathLike, *, reference_dir: str | os.PathLike | None = None
) -> VerificationReport:
    """Checks a folder written from `model`: reloaded with `from_pretrained`, every saved tensor is bit-identical to
    the model's; then the reloaded model reproduces the reference outputs in `reference_dir` (see
    [`compare_with_reference`]) or, without a reference, runs a forward pass on random inputs with finite outputs."""
    report = VerificationReport()
    reloaded = type(model).from_pretrained(folder).eval()
    expected, saved = model.state_dict(), reloaded.state_dict()
    differing = sorted(key for key in expected.keys() & saved.keys() if not torch.equal(expected[key], saved[key]))
    differing += sorted(expected.keys() ^ saved.keys())
    report.add(
        "saved weights",
        not differing,
        f"{len(expected)} tensors bit-identical after reloading"
        if not differing
        else f"{len(differing)} tensors differ or are missing: {differing[:10]}",
    )
    if reference_dir is not None:
        compare_with_reference(reloaded, reference_dir, report)
    else:
        kwargs = {"generator": torch.Generator().manual_seed(0)} if isinstance(model, AVFMAEForPreTraining) else {}
        with torch.no_grad():
            outputs = reloaded(**random_inputs(reloaded.config), **kwargs)
        finite = _finite(outputs.to_tuple())
        report.add("forward", finite, "random inputs give finite outputs" if finite else "non-finite outputs")
    return report


# --------------------------------------------------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ConversionResult:
    """What [`convert_checkpoint`] did."""

    config: AVFMAEConfig
    task: str
    report: ConversionReport
    num_parameters: int
    files: list[str]
    output_dir: Path | None = None
    verification: VerificationReport | None = None
    commit_url: str | None = None
    dropped_entries: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            self.report.summary(),
            f"{self.num_parameters:,} parameters in the {self.task} model.",
        ]
        if self.dropped_entries:
            lines.append(f"Checkpoint entries not converted: {', '.join(self.dropped_entries)}.")
        if self.verification is not None:
            lines.append(self.verification.summary())
        if self.output_dir is not None:
            lines.append(f"Saved {len(self.files)} files to {self.output_dir}.")
        if self.commit_url is not None:
            lines.append(f"Published: {self.commit_url}")
        return "\n".join(lines)


@contextlib.contextmanager
def _temporary_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    size: str = "auto",
    task: str | None = None,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | None = None,
    dataset: str | None = None,
    original_config: Mapping[str, Any] | None = None,
    verify: bool = False,
    reference_dir: str | os.PathLike | None = None,
    push_to_hub: str | None = None,
    private: bool | None = None,
    unsafe_pickle: bool = False,
    overwrite: bool = False,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    processor: Any = None,
    base_model: str | None = None,
    eval_results: Iterable[tuple[str, float]] | None = None,
) -> ConversionResult:
    """Converts an official AVF-MAE++ checkpoint into a folder (and/or Hub repository) that loads with
    `from_pretrained`: the function behind `avfmae convert`.

    Steps: safe loading ([`load_original_checkpoint`]); the configuration from the weights and the checkpoint's
    `args` ([`build_config`]) and the labels ([`classifier_labels`]); the state-dict conversion with its report; the
    export ([`~hub_avfmae.write_checkpoint_files`]: safetensors, config with the full `auto_map`, code files, the
    processor, model card) into a temporary folder next to `output_dir`; with `verify` (implied by
    `reference_dir`) the checks of [`verify_export`]; then the folder is moved into place and published to
    `push_to_hub` in one commit. Any error, a failed verification included ([`VerificationError`]), leaves no output.

    Args:
        checkpoint: `.pth` (official `torch.save` dict or bare state dict) or `.safetensors` state dict.
        output_dir: the folder to write; optional when `push_to_hub` is given.
        size: `"auto"` (from the weights) or `"base"` / `"large"` / `"huge"`, which must match the weights.
        task: `"pretraining"` or `"classification"`; defaults to the checkpoint's own. A pretraining checkpoint
            converted for classification keeps its encoders and fusion module and gets a new head.
        num_labels, id2label, dataset: the classes (see [`classifier_labels`]).
        original_config: official constructor arguments, for checkpoints of other sizes than the released ones.
        verify: check the saved folder; `reference_dir` holds `inputs.safetensors` / `outputs.safetensors` of the
            official model to reproduce.
        push_to_hub, private: the Hub repository to create or update, and its visibility when created.
        unsafe_pickle: unrestricted unpickling of a trusted `.pth` that safe loading refuses.
        overwrite: replace a non-empty `output_dir`.
        max_shard_size: largest safetensors shard.
        processor: saved with the model; default: [`AVFMAEProcessor.for_model_config`] of the converted config.
        base_model, eval_results: model-card metadata; `eval_results` are `(metric, value)` pairs on `dataset`.
    """
    if output_dir is None and push_to_hub is None:
        raise ValueError("Give an output folder, a Hub repository to push to, or both.")
    if task not in (None, *MODEL_CLASSES):
        raise ValueError(f"task must be one of {', '.join(MODEL_CLASSES)}, got {task!r}.")
    eval_results = list(eval_results or [])
    if eval_results and dataset is None:
        raise ValueError("Evaluation results need the dataset they were measured on (--dataset).")
    if output_dir is not None and Path(output_dir).exists() and any(Path(output_dir).iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} already exists and is not empty; choose another folder or overwrite it.")
    verify = verify or reference_dir is not None

    original = load_original_checkpoint(checkpoint, unsafe_pickle=unsafe_pickle)
    architecture = describe_original_state_dict(original.state_dict)
    logger.info(f"{original.path.name}: {architecture.describe()}.")
    task = task or architecture.task
    labels = classifier_labels(
        architecture, task, num_labels=num_labels, id2label=id2label, dataset=dataset, args=original.args
    )
    config = build_config(
        architecture, args=original.args, size=size, original_config=original_config, id2label=labels
    )
    converted, report = convert_original_state_dict(original.state_dict, config, target_task=task, return_report=True)
    source = f"the official checkpoint `{original.path.name}`" + (
        f" (epoch {original.epoch})" if original.epoch is not None else ""
    )
    dropped_entries, original = original.dropped, None  # release the memory-mapped file

    model = MODEL_CLASSES[task](config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if unexpected or sorted(missing) != sorted(report.initialized):
        raise RuntimeError(f"Conversion and model disagree: missing {missing}, unexpected {unexpected}.")
    model.eval()
    del converted

    results = [
        EvalResult(
            task_type="video-classification",
            dataset_type=official_dataset_name(dataset).lower(),
            dataset_name=official_dataset_name(dataset),
            metric_type=metric,
            metric_value=value,
        )
        for metric, value in eval_results
    ]
    notes = []
    if report.initialized:
        notes.append(
            f"Its classification head ({_abbreviate_keys(report.initialized)}) is newly initialised, not trained: "
            "fine-tune the model before using its predictions."
        )
    processor = processor if processor is not None else AVFMAEProcessor.for_model_config(config)
    card = build_model_card(
        model,
        repo_id=push_to_hub,
        base_model=base_model,
        eval_results=results,
        source=source,
        model_name=push_to_hub or (Path(output_dir).name if output_dir is not None else None),
        notes=notes,
        with_processor=True,
    )
    result = ConversionResult(
        config=config,
        task=task,
        report=report,
        num_parameters=model.num_parameters(),
        files=[],
        dropped_entries=dropped_entries,
    )
    staging = staged_directory(output_dir, overwrite=overwrite) if output_dir is not None else _temporary_folder()
    with staging as folder:
        result.files = write_checkpoint_files(
            model, folder, processor=processor, model_card=card, max_shard_size=max_shard_size
        )
        if verify:
            result.verification = verify_export(model, folder, reference_dir=reference_dir)
            if not result.verification.ok:
                raise VerificationError(report, result.verification)
        if push_to_hub is not None and output_dir is None:
            result.commit_url = _push(folder, push_to_hub, config, task, private)
    if output_dir is not None:
        result.output_dir = Path(output_dir)
        if push_to_hub is not None:
            result.commit_url = _push(result.output_dir, push_to_hub, config, task, private)
    return result


def _abbreviate_keys(keys: list[str]) -> str:
    return ", ".join(f"`{key}`" for key in keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")


def _push(folder: Path, repo_id: str, config: AVFMAEConfig, task: str, private: bool | None) -> str:
    width = config.video_config.hidden_size
    commit = upload_folder_to_hub(
        folder,
        repo_id,
        commit_message=f"Upload AVF-MAE++ {task} model (hidden size {width}) converted from the official checkpoint",
        private=private,
    )
    return getattr(commit, "commit_url", None) or str(commit)


__all__ = [
    "CheckpointError",
    "ConversionResult",
    "OriginalCheckpoint",
    "VerificationError",
    "VerificationReport",
    "build_config",
    "classifier_labels",
    "compare_with_reference",
    "convert_checkpoint",
    "load_original_checkpoint",
    "random_inputs",
    "read_original_config",
    "reference_outputs",
    "safe_globals",
    "verify_export",
]
