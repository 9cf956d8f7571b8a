# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""One process of a multi-process `training/run_pretraining.py` run (started by torchrun in the tests).

Usage: `torchrun ... tests/pretraining_worker.py <report_dir> <run_pretraining.py arguments>`. After training, each
process writes `<report_dir>/rank_<i>.json` with what it trained and a digest of its final parameters, so the test
reads the real outcome of every rank instead of the launcher's exit status.
"""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path


SCRIPT = Path(__file__).resolve().parents[1] / "training" / "run_pretraining.py"


def digest(tensors) -> str:
    hasher = hashlib.sha256()
    for name, tensor in tensors:
        hasher.update(name.encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()


def main() -> None:
    spec = importlib.util.spec_from_file_location("run_pretraining", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report_dir, arguments = Path(sys.argv[1]), sys.argv[2:]
    result = script.main(arguments)
    model = result.pop("model")
    report = {
        **result,
        "parameters_sha256": digest(sorted(model.named_parameters())),
        "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
    }
    (report_dir / f"rank_{result['process_index']}.json").write_text(json.dumps(report))
    script.finish()


if __name__ == "__main__":
    main()
