"""Checkpoint files shaped like the official release's, built at test time from the committed tiny fixtures."""

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file


OFFICIAL = Path(__file__).parent / "fixtures" / "official"
DTYPES = {"float32": torch.float32, "int64": torch.int64}


def fixture_state_dict(name: str) -> dict[str, torch.Tensor]:
    return load_file(OFFICIAL / name / "state_dict.safetensors")


def fixture_config_path(name: str) -> Path:
    return OFFICIAL / name / "config.json"


def fixture_constructor_kwargs(name: str) -> dict:
    return json.loads(fixture_config_path(name).read_text())["constructor_kwargs"]


def real_variant_meta_state_dict(task: str, size: str) -> dict[str, torch.Tensor]:
    """The state dict of a released variant (keys and shapes only, on the meta device)."""
    description = json.loads((OFFICIAL / f"keys_{task}_{size}.json").read_text())
    return {
        entry["key"]: torch.empty(entry["shape"], dtype=DTYPES[entry["dtype"]], device="meta")
        for entry in description["state_dict"]
    }


def training_args(task: str, **overrides) -> Namespace:
    """Training-script arguments of a tiny run, with numpy scalars where the official scripts can produce them."""
    common = {
        "batch_size": np.int64(2),
        "lr": np.float64(1.5e-4),
        "min_lr": np.float32(1e-5),
        "opt_betas": [0.9, 0.95],
        "epochs": 100,
        "input_size": 16,
        "num_frames": 16,
        "sampling_rate": np.int64(4),
        "output_dir": "/runs/tiny",
        "device": "cuda",
        "attn_type": "local_global",
        "lg_region_size": [2, 2, 4],
        "lg_region_size_audio": [2, 2],
    }
    if task == "pretraining":
        specific = {
            "model": "pretrain_tiny",
            "mask_type": "tube",
            "mask_ratio": np.float64(0.75),
            "mask_ratio_audio": np.float64(0.5),
            "decoder_mask_type": "run_cell",
            "decoder_mask_ratio": 0.5,
            "return_intermediate_features": (0, 1),
            "loss_weight": np.float64(0.0025),
            "use_frame_diff_as_target": True,
        }
    else:
        specific = {
            "model": "avit_tiny",
            "nb_classes": np.int64(7),
            "data_set": "DFEW",
            "depth": 2,
            "depth_audio": 2,
            "fusion_depth": 2,
            "drop_path": np.float64(0.1),
            "lg_classify_token_type": "region",
        }
    return Namespace(**{**common, **specific, **overrides})


def save_official_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], args: Namespace | None = None, **extra):
    """`torch.save` the way the official `save_model` does: model, optimizer, epoch, loss scaler, args."""
    first = next(iter(state_dict.values()))
    checkpoint = {
        "model": state_dict,
        "optimizer": {
            "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros_like(first)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "weight_decay": 0.05, "params": [0]}],
        },
        "epoch": 99,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "_growth_tracker": 12},
        "args": args,
        **extra,
    }
    torch.save(checkpoint, path)
    return path
