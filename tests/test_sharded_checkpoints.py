# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Pretraining step folders are Hub-ready under FSDP2 too: the model sharded over two processes (gloo on CPU) is
gathered and written by the function the pretraining script calls after `accelerator.save_state`, and the folder
loads with remote code alone, holding the unsharded model's weights."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avfmae_hf import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEProcessor
from avfmae_hf.training_avfmae import AVFMAETrainer, save_hub_ready
from tests.test_training_scale import assert_hub_ready, load_without_the_package
from tests.test_training_scripts import ROOT, script_environment
from tests.tiny_configs import tiny_config


WORKER = ROOT / "tests" / "fsdp_checkpoint_worker.py"


@pytest.mark.slow
def test_a_step_folder_written_from_an_fsdp2_sharded_model_is_hub_ready_and_holds_the_full_weights(tmp_path):
    config = tiny_config()
    config.save_pretrained(tmp_path / "config")
    AVFMAEProcessor.for_model_config(config).save_pretrained(tmp_path / "processor")
    step_dir = tmp_path / "step_1"
    torchrun = shutil.which("torchrun", path=os.fspath(Path(sys.executable).parent))
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    completed = subprocess.run(
        [*launcher, "--standalone", "--nproc_per_node", "2", os.fspath(WORKER), os.fspath(tmp_path / "config"),
         os.fspath(tmp_path / "processor"), os.fspath(step_dir)],
        env=script_environment(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    ranks = [json.loads((step_dir / f"rank_{rank}.json").read_text()) for rank in (0, 1)]
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    # really sharded: each process held about half of the parameters
    assert ranks[0]["total"] == ranks[1]["total"] and all(rank["local"] < rank["total"] for rank in ranks)
    assert ranks[0]["local"] + ranks[1]["local"] >= ranks[0]["total"]

    assert_hub_ready(step_dir)
    torch.manual_seed(0)  # the worker's weights
    unsharded = AVFMAEForPreTraining(config)
    expected = unsharded.state_dict()
    saved = AVFMAEForPreTraining.from_pretrained(step_dir).state_dict()
    assert sorted(saved) == sorted(expected)
    assert all(torch.equal(saved[name], expected[name]) for name in expected)
    result = load_without_the_package(tmp_path, [(step_dir, "AutoModelForPreTraining")])
    assert result.pop("package_in_modules") == []
    assert result[os.fspath(step_dir)]["model"] == ["AVFMAEForPreTraining", "transformers_modules"]
    assert result[os.fspath(step_dir)]["parameter_sum"] == pytest.approx(
        float(sum(parameter.detach().double().sum() for parameter in unsharded.parameters())), rel=1e-12
    )


def as_fsdp2_class(model):
    """`model` with the class swap FSDP2's `fully_shard` makes (a subclass of `FSDPModule`), without a process group:
    what the saving functions see of a sharded model's class."""
    from torch.distributed.fsdp import FSDPModule

    model.__class__ = type(f"FSDP{type(model).__name__}", (FSDPModule, type(model)), {})
    return model


def test_a_sharded_model_without_its_gathered_weights_is_refused(tmp_path):
    model = as_fsdp2_class(AVFMAEForPreTraining(tiny_config()))
    with pytest.raises(ValueError, match="full state dict, gathered from every process"):
        save_hub_ready(model, tmp_path / "out", state_dict={})
    save_hub_ready(model, tmp_path / "other", state_dict={}, is_main_process=False)
    assert not (tmp_path / "other").exists()  # only the main process writes


def test_finetuning_checkpoints_of_an_fsdp2_model_are_saved_hub_ready_from_the_gathered_weights(tmp_path):
    from transformers import TrainingArguments

    config = tiny_config(id2label={0: "calm", 1: "sad"})
    processor = AVFMAEProcessor.for_model_config(config)
    plain = AVFMAEForVideoClassification(config)
    gathered = {name: value.clone() for name, value in plain.state_dict().items()}
    arguments = TrainingArguments(output_dir=os.fspath(tmp_path / "run"), use_cpu=True, report_to=[])
    trainer = AVFMAETrainer(model=plain, args=arguments, processing_class=processor)
    as_fsdp2_class(trainer.model)  # after the Trainer has placed it, as accelerate shards it at prepare
    trainer._save(os.fspath(tmp_path / "checkpoint-1"), state_dict=gathered)
    folder = tmp_path / "checkpoint-1"
    assert_hub_ready(folder)
    assert (folder / "training_args.bin").is_file()
    saved = AVFMAEForVideoClassification.from_pretrained(folder)
    assert type(saved) is AVFMAEForVideoClassification and saved.config.id2label == {0: "calm", 1: "sad"}
    assert all(torch.equal(saved.state_dict()[name], gathered[name]) for name in gathered)
