# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The training scripts end to end on tiny models: `Trainer` fine-tuning, Accelerate pretraining with an exact resume,
and a two-process CPU pretraining run."""

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForVideoClassification, AutoProcessor, HfArgumentParser

from avfmae_hf import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEProcessor
from avfmae_hf.training_avfmae import parse_arguments
from tests.tiny_configs import tiny_config


ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the Trainer pickles the script's argument class with its checkpoints
    spec.loader.exec_module(module)
    return module


def script_environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.fspath(ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture
def restore_logging():
    """The fine-tuning script configures logging as a program does (a root handler on stdout, transformers' and
    datasets' verbosity); undo it for the tests that run after it in this process."""
    import datasets
    import transformers

    root_handlers, root_level = list(logging.root.handlers), logging.root.level
    verbosity, datasets_verbosity = transformers.logging.get_verbosity(), datasets.logging.get_verbosity()
    yield
    for handler in logging.root.handlers[:]:
        if handler not in root_handlers:
            logging.root.removeHandler(handler)
    logging.root.setLevel(root_level)
    transformers.logging.set_verbosity(verbosity)
    transformers.logging.reset_format()
    datasets.logging.set_verbosity(datasets_verbosity)


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory):
    """A tiny pretraining checkpoint with its processor (faces already framed: no face crop)."""
    folder = tmp_path_factory.mktemp("tiny_pretrained")
    config = tiny_config()
    AVFMAEForPreTraining(config).save_pretrained(folder)
    processor = AVFMAEProcessor.for_model_config(config)
    processor.video_processor.do_face_crop = False
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pretraining_list(tmp_path_factory, processor_cropped_clip):
    """Four videos in the official pretraining list format (`<video> <dummy label>`)."""
    path = tmp_path_factory.mktemp("pretraining_list") / "videos.txt"
    path.write_text(f"{processor_cropped_clip} 0\n" * 4)
    return path


def test_finetuning_script_trains_evaluates_and_saves_a_loadable_checkpoint(
    restore_logging, tmp_path, tiny_pretrained, processor_cropped_clip, processor_frame_folder, processor_wav_file
):
    train = tmp_path / "train.txt"  # official format: <frames_dir> <audio> <label>, and <video> <label>
    train.write_text(
        f"{processor_frame_folder} {processor_wav_file} 0\n{processor_cropped_clip} 2\n"
        f"{processor_frame_folder} {processor_wav_file} 1\n{processor_cropped_clip} 2\n"
    )
    validation = tmp_path / "validation.csv"  # labels by name
    validation.write_text(
        f"video,audio,label\n{processor_cropped_clip},,sad\n{processor_frame_folder},{processor_wav_file},calm\n"
    )
    test = tmp_path / "test.csv"
    test.write_text(validation.read_text())
    output_dir = tmp_path / "finetuned"
    script = load_script("run_finetuning")
    results = script.main(
        [
            "--model_name_or_path", os.fspath(tiny_pretrained), "--id2label", "calm,happy,sad",
            "--train_file", os.fspath(train), "--validation_file", os.fspath(validation),
            "--test_file", os.fspath(test), "--output_dir", os.fspath(output_dir),
            "--do_train", "--do_eval", "--max_steps", "3", "--per_device_train_batch_size", "2",
            "--per_device_eval_batch_size", "2", "--base_learning_rate", "1e-3", "--lr_scheduler_type", "constant",
            "--label_smoothing_factor", "0.1", "--drop_path_rate", "0.1",
            "--save_steps", "2", "--logging_steps", "1", "--use_cpu", "--report_to", "none",
        ]
    )  # fmt: skip
    for split in ("eval", "test"):
        for metric in ("uar", "war", "weighted_f1", "loss"):
            assert 0.0 <= results[f"{split}_{metric}"] < float("inf"), f"{split}_{metric}"
    assert results["epoch"] == pytest.approx(1.5)

    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    # base 1e-3 x (2 per device x 1 step x 1 process) / 256, the first (top-layer) group's rate
    assert state["log_history"][0]["learning_rate"] == pytest.approx(1e-3 * 2 / 256)

    for folder in (output_dir / "checkpoint-2", output_dir):
        model = AutoModelForVideoClassification.from_pretrained(folder)
        assert isinstance(model, AVFMAEForVideoClassification)
        assert model.config.id2label == {0: "calm", 1: "happy", 2: "sad"}
        assert model.config.drop_path_rate == 0.1
        processor = AutoProcessor.from_pretrained(folder)
        assert isinstance(processor, AVFMAEProcessor) and processor.video_processor.size == {"height": 16, "width": 16}
    assert (output_dir / "checkpoint-2" / "optimizer.pt").is_file()
    trained = load_file(output_dir / "model.safetensors")
    initial = load_file(tiny_pretrained / "model.safetensors")
    assert not torch.equal(
        trained["avfmae.video_embeddings.projection.weight"], initial["avfmae.video_embeddings.projection.weight"]
    )


def test_finetuning_needs_named_labels_and_one_model_source(restore_logging, tiny_pretrained, tmp_path):
    script = load_script("run_finetuning")
    with pytest.raises(ValueError, match="Name the classes"):
        script.main(["--model_name_or_path", os.fspath(tiny_pretrained), "--output_dir", os.fspath(tmp_path)])
    with pytest.raises(ValueError, match="exactly one of"):
        script.main(["--size", "base", "--config_name", "x", "--output_dir", os.fspath(tmp_path)])


@pytest.mark.parametrize(
    ("script_name", "recipe", "expected"),
    [
        (
            "run_finetuning",
            "finetune_mafw_huge.json",
            {"layer_decay": 0.75, "adam_beta2": 0.999, "weight_decay": 0.05},
        ),
        ("run_pretraining", "pretrain_base.json", {"adam_beta2": 0.95, "base_learning_rate": 1.5e-4}),
        ("run_pretraining", "pretrain_large.json", {"adam_beta2": 0.95, "base_learning_rate": 3e-4}),
        ("run_pretraining", "pretrain_huge.json", {"adam_beta2": 0.95, "max_grad_norm": 0.7}),
    ],
)
def test_recipes_parse_into_the_scripts_arguments(script_name, recipe, expected, tmp_path):
    script = load_script(script_name)
    parser = HfArgumentParser(script.ARGUMENT_CLASSES)
    extra = ["--train_file", "videos.txt"] if script_name == "run_pretraining" else ["--model_name_or_path", "m"]
    model_args, data_args, *extras, training_args = parse_arguments(
        parser, [os.fspath(TRAINING / recipe), *extra, "--output_dir", os.fspath(tmp_path), "--use_cpu"]
    )
    for name, value in expected.items():
        assert getattr(training_args, name) == pytest.approx(value), name
    assert training_args.lr_scheduler_type == "cosine_with_min_lr"
    assert 0 < training_args.warmup_steps < 1, "warm-up as a fraction of training"
    if script_name == "run_finetuning":
        assert data_args.dataset == "MAFW" and model_args.drop_path_rate == 0.1
        # the official train augmentations, model selection on the validation split by WAR
        augmentation_args = extras[0]
        assert augmentation_args.enabled() == [
            "randaugment",
            "random_resized_crop",
            "horizontal_flip",
            "random_erasing",
            "mixup_cutmix",
        ]
        assert augmentation_args.randaugment_policy == "rand-m7-n4-mstd0.5-inc1"
        assert (augmentation_args.mixup_alpha, augmentation_args.cutmix_alpha) == (0.8, 1.0)
        assert data_args.model_selection_split == "validation" and data_args.validation_sampling_mode == "train"
        assert training_args.metric_for_best_model == "war" and training_args.load_best_model_at_end
    else:
        assert data_args.multiscale_crop and data_args.random_temporal_start and data_args.audio_gain_jitter


@pytest.mark.slow
def test_pretraining_resumes_exactly(tmp_path, pretraining_list):
    config_dir = tmp_path / "config"
    tiny_config().save_pretrained(config_dir)
    common = [
        sys.executable, os.fspath(TRAINING / "run_pretraining.py"), "--config_name", os.fspath(config_dir),
        "--do_face_crop", "false", "--train_file", os.fspath(pretraining_list), "--per_device_train_batch_size", "2",
        "--max_steps", "3", "--save_steps", "1", "--logging_steps", "1", "--learning_rate", "1e-3",
        "--warmup_steps", "1", "--use_cpu",
    ]  # fmt: skip
    # 4 videos, 2 per batch: 2 steps per epoch; the resumed run starts mid-epoch (skipping a used batch) and crosses
    # into the next epoch
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common += ["--validation_file", os.fspath(pretraining_list), "--per_device_eval_batch_size", "3"]
    for output_dir, extra in ((straight, []), (resumed, ["--resume_from_checkpoint", os.fspath(straight / "step_1")])):
        completed = subprocess.run(
            [*common, "--output_dir", os.fspath(output_dir), *extra],
            env=script_environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    results = [json.loads((folder / "train_results.json").read_text()) for folder in (straight, resumed)]
    assert results[0]["completed_steps"] == results[1]["completed_steps"] == 3
    assert results[0]["eval_loss"] == results[1]["eval_loss"] > 0  # held-out loss with fixed masks, same weights
    assert sorted(path.name for path in resumed.glob("step_*")) == ["step_2", "step_3"]
    for name in ("step_2/model.safetensors", "step_3/model.safetensors", "model.safetensors"):
        expected, actual = load_file(straight / name), load_file(resumed / name)
        assert expected.keys() == actual.keys()
        assert all(torch.equal(expected[key], actual[key]) for key in expected), name
    first, last = load_file(straight / "step_1/model.safetensors"), load_file(straight / "model.safetensors")
    assert not all(torch.equal(first[key], last[key]) for key in first), "training changed the weights"
    model = AVFMAEForPreTraining.from_pretrained(resumed)
    assert AVFMAEProcessor.from_pretrained(resumed).video_processor.size == {"height": 16, "width": 16}
    assert model.config.video_config.hidden_size == 32


def test_find_checkpoint_picks_the_latest_step(tmp_path):
    script = load_script("run_pretraining")
    for step in (2, 10, 9):
        (tmp_path / f"step_{step}").mkdir()
    assert script.find_checkpoint("latest", tmp_path) == os.fspath(tmp_path / "step_10")
    assert script.find_checkpoint("some/step_3", tmp_path) == "some/step_3"
    assert script.find_checkpoint(None, tmp_path) is None
    with pytest.raises(ValueError, match="No step_"):
        script.find_checkpoint("latest", tmp_path / "step_2")


@pytest.mark.slow
def test_two_process_cpu_pretraining_keeps_the_ranks_identical(tmp_path, pretraining_list):
    config_dir, reports, output_dir = tmp_path / "config", tmp_path / "reports", tmp_path / "out"
    tiny_config().save_pretrained(config_dir)
    reports.mkdir()
    validation = tmp_path / "validation.txt"  # 3 videos on 2 processes: the last batch is evened out, then dropped
    validation.write_text(pretraining_list.read_text().splitlines(keepends=True)[0] * 3)
    torchrun = shutil.which("torchrun", path=os.fspath(Path(sys.executable).parent))
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    completed = subprocess.run(
        [
            *launcher, "--standalone", "--nproc_per_node", "2", os.fspath(ROOT / "tests" / "pretraining_worker.py"),
            os.fspath(reports), "--config_name", os.fspath(config_dir), "--do_face_crop", "false",
            "--train_file", os.fspath(pretraining_list), "--output_dir", os.fspath(output_dir),
            "--per_device_train_batch_size", "2", "--max_steps", "2", "--save_steps", "1", "--learning_rate", "1e-3",
            "--use_cpu", "--validation_file", os.fspath(validation), "--per_device_eval_batch_size", "1",
        ],
        env=script_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    # the ranks' own reports are the result; the launcher's exit status is not relied on
    ranks = [json.loads(path.read_text()) for path in sorted(reports.glob("rank_*.json"))]
    assert len(ranks) == 2, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert sorted(rank["process_index"] for rank in ranks) == [0, 1]
    assert all(rank["num_processes"] == 2 and rank["completed_steps"] == 2 for rank in ranks)
    assert ranks[0]["parameters_sha256"] == ranks[1]["parameters_sha256"]
    assert ranks[0]["eval_loss"] == ranks[1]["eval_loss"] > 0
    # 4 videos, 2 per process: one step per epoch, so 2 steps are 2 epochs
    assert all(rank["epoch"] == 2.0 for rank in ranks)
    assert sorted(path.name for path in (output_dir / "step_1").glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    saved = load_file(output_dir / "model.safetensors")
    assert sum(tensor.numel() for key, tensor in saved.items()) >= ranks[0]["num_parameters"]


@pytest.mark.slow
def test_pretraining_draws_reconstructions_every_k_steps_and_at_the_end_into_files_and_tensorboard(
    tmp_path, pretraining_list
):
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    config_dir, output_dir = tmp_path / "config", tmp_path / "out"
    tiny_config().save_pretrained(config_dir)
    completed = subprocess.run(
        [
            sys.executable, os.fspath(TRAINING / "run_pretraining.py"), "--config_name", os.fspath(config_dir),
            "--do_face_crop", "false", "--train_file", os.fspath(pretraining_list), "--output_dir", os.fspath(output_dir),
            "--per_device_train_batch_size", "2", "--max_steps", "3", "--save_strategy", "no", "--use_cpu",
            "--reconstruction_steps", "2", "--report_to", "tensorboard",
        ],
        env=script_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    # every 2 steps, and the last step (3) although 3 is not a multiple of 2
    figures = sorted((output_dir / "reconstructions").iterdir())
    assert [path.name for path in figures] == ["step_2.png", "step_3.png"]
    for path in figures:
        image = np.asarray(Image.open(path).convert("RGB"))
        # 16 frames x 1.25 in + 1.5 in wide, 3 x 1.25 in + 3 x 1.6 in + 0.6 in high, at 100 dpi
        assert image.shape == (915, 2150, 3)
        assert image.std() > 10, f"{path.name} looks blank"
    # the run's event file (the hyper-parameters go to a sub-folder of their own)
    accumulator = EventAccumulator(os.fspath(output_dir / "avfmae_pretraining"), size_guidance={IMAGES: 0})
    accumulator.Reload()
    assert accumulator.Tags()[IMAGES] == ["reconstruction"]
    logged = accumulator.Images("reconstruction")
    assert [(event.step, event.width, event.height) for event in logged] == [(2, 2150, 915), (3, 2150, 915)]
