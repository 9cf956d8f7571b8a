"""Every Python block of README.md runs, in order, against tiny saved models and generated videos substituted for the
paths it names (offline): a block that starts with its imports in a namespace of its own, as a reader copying it alone
would run it, and a block that continues the one before it in that block's namespace."""

import re
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from avfmae_hf import AVFMAEForVideoClassification, AVFMAEProcessor, export_checkpoint
from tests.official_checkpoints import fixture_constructor_kwargs, fixture_state_dict, save_official_checkpoint
from tests.tiny_configs import tiny_config


README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_has_python_blocks_and_every_path_they_name_is_substituted():
    blocks = python_blocks()
    assert len(blocks) >= 5
    named = set(re.findall(r'"([^"]+\.(?:mp4|pth))"|"((?:path/to|your-name)/[^"]+)"', "\n".join(blocks)))
    named = {path for pair in named for path in pair if path}
    assert named <= set(SUBSTITUTED), named - set(SUBSTITUTED)


SUBSTITUTED = ("path/to/avf-mae-pp-huge-mafw", "your-name/avf-mae-pp-huge-mafw", "interview.mp4", "short.mp4",
               "checkpoint-best.pth")  # fmt: skip


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path, processor_face_clip, processor_index_clips, capsys):
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tiny_config(id2label={0: "anger", 1: "happiness", 2: "neutral"}))
    folder = tmp_path / "tiny-classifier"
    export_checkpoint(model, folder, processor=AVFMAEProcessor.for_model_config(model.config))
    checkpoint = save_official_checkpoint(
        tmp_path / "checkpoint-best.pth",
        fixture_state_dict("tiny_finetune"),
        Namespace(**fixture_constructor_kwargs("tiny_finetune")),
    )
    targets = [folder, folder, processor_face_clip[0], processor_index_clips["short"], checkpoint]
    paths = dict(zip(SUBSTITUTED, targets, strict=True))
    namespace = {}
    for number, block in enumerate(python_blocks()):
        for name, path in paths.items():
            block = block.replace(f'"{name}"', repr(str(path)))
        if block.startswith(("import ", "from ")):
            namespace = {}  # a block that starts with its imports must run when copied alone
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "'label': " in out and "0.00-2.56 s" in out and "padded" in out
