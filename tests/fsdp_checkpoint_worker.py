# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""One process of a two-process FSDP2 run (started by torchrun in the tests, gloo on CPU) that writes a pretraining
step folder's Hub-ready model from a sharded model, with the function `training/run_pretraining.py` calls after
`accelerator.save_state`.

Usage: `torchrun --nproc_per_node 2 tests/fsdp_checkpoint_worker.py <config_dir> <processor_dir> <output_dir>`.

Accelerate does not start FSDP without GPUs, so the model is sharded with torch's `fully_shard` directly (each layer
of the model's `_no_split_modules`, then the whole model, as accelerate's FSDP2 preparation does) and the
accelerator's state is told it runs FSDP2: `accelerator.get_state_dict` then takes its FSDP2 path (the full state
dict gathered from both processes). Each process writes `<output_dir>/rank_<i>.json` with the number of parameters
it holds locally and of the whole model.
"""

import importlib.util
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator, FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType
from torch.distributed.fsdp import fully_shard

from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining, AVFMAEProcessor


TRAINING = Path(__file__).resolve().parents[1] / "training"


def main() -> None:
    config_dir, processor_dir, output_dir = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("run_pretraining", TRAINING / "run_pretraining.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    accelerator = Accelerator(cpu=True)  # the gloo process group of torchrun's two processes
    Path(output_dir).mkdir(parents=True, exist_ok=True)  # as accelerator.save_state makes it in every process
    torch.manual_seed(0)  # the same weights in both processes, as the script's seeding gives
    model = AVFMAEForPreTraining(AVFMAEConfig.from_pretrained(config_dir))
    layer_classes = tuple(model._no_split_modules)
    for module in model.modules():
        if type(module).__name__ in layer_classes:
            fully_shard(module)
    fully_shard(model)
    local = sum(parameter.to_local().numel() for parameter in model.parameters())
    total = sum(parameter.numel() for parameter in model.parameters())

    accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    accelerator.state.distributed_type = DistributedType.FSDP
    assert accelerator.is_fsdp2
    script.save_hub_ready_models(accelerator, [model], output_dir, AVFMAEProcessor.from_pretrained(processor_dir))

    rank = accelerator.process_index
    Path(output_dir, f"rank_{rank}.json").write_text(json.dumps({"local": local, "total": total}))
    script.finish()  # the script's own teardown of the process group


if __name__ == "__main__":
    main()
