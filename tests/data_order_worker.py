# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""One process of a multi-process training run that records which training clips it loaded (started by torchrun in
the tests).

Usage: `torchrun ... tests/data_order_worker.py <run_pretraining|run_finetuning> <report_dir> <script arguments>`.
Every training item a process loads (a dataset in the `"train"` sampling mode) is recorded as `[epoch, index]`;
after the run, each process writes `<report_dir>/rank_<i>.json` with that list, in loading order.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

from avfmae_hf.training_avfmae import AVFMAEVideoDataset


TRAINING = Path(__file__).resolve().parents[1] / "training"


def main() -> None:
    name, report_dir, arguments = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[name] = script  # the Trainer pickles the script's argument class with its checkpoints
    spec.loader.exec_module(script)

    loaded = []
    load_item = AVFMAEVideoDataset.__getitem__

    def recording_getitem(self, index):
        if self.sampling_mode == "train":
            loaded.append([self.epoch, int(index)])
        return load_item(self, index)

    AVFMAEVideoDataset.__getitem__ = recording_getitem
    script.main(arguments)
    rank = int(os.environ.get("RANK", 0))  # the process group may be gone once the script ends its run
    (report_dir / f"rank_{rank}.json").write_text(json.dumps({"loaded": loaded}))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
