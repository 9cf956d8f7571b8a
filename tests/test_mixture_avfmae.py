# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Stage 2 (hybrid intermediate fine-tuning): label mappings into one vocabulary, the shipped examples, mixture files
and weighted sampling, the guard against test-split clips, and the three-stage recipe end to end on generated data."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avfmae_hf import AVFMAEForVideoClassification
from avfmae_hf.label_mapping_avfmae import BASIC_EMOTIONS, LabelMapping, LabelMappingError
from avfmae_hf.mixture_avfmae import (
    MixtureDataset,
    TargetTestClipError,
    check_no_test_clips,
    clip_fingerprint,
    load_mixture,
)
from avfmae_hf.training_avfmae import ListEntry
from tests.media import synthetic
from tests.test_training_scripts import TRAINING, load_script, restore_logging, script_environment  # noqa: F401
from tests.tiny_configs import tiny_config


MAPPINGS = TRAINING / "label_mappings"


def write_mapping(folder: Path, name: str, content: dict) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(content))
    return path


def clip_folder(root: Path, name: str, seed: int, num_frames: int = 20, size: int = 32) -> str:
    """A small frame folder of random-colour blocks, distinct per seed."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (num_frames, 4, 4, 3), dtype=np.uint8)
    frames = np.repeat(np.repeat(blocks, size // 4, axis=1), size // 4, axis=2)
    return synthetic.write_frame_folder(root / name, frames)


# --------------------------------------------------------------------------------------------------------------------
# Label mappings
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("mafw.json", {"anger": "anger", "happiness": "happiness", "contempt": None, "disappointment": None}),
        ("dfew.json", {"happy": "happiness", "angry": "anger", "fear": "fear"}),
        ("crema-d.json", {"ANG": "anger", "DIS": "disgust", "NEU": "neutral"}),
        ("mer24.json", {"worried": None, "happy": "happiness", "sad": "sadness"}),
        ("ravdess.json", {"calm": "neutral", "fearful": "fear", "surprised": "surprise"}),
        ("iemocap.json", {"neutral": "neutral", "happy": "happiness", "angry": "anger", "sad": "sadness"}),
    ],
)
def test_shipped_label_mappings_load_into_the_basic_emotions(file, expected):
    mapping = LabelMapping.from_file(MAPPINGS / file, BASIC_EMOTIONS)
    assert set(mapping.mapping) == set(mapping.source_labels)
    for source, target in expected.items():
        index = mapping.target_index(mapping.source_labels.index(source))
        assert (None if index is None else BASIC_EMOTIONS[index]) == target, source


def test_official_orders_are_used_when_a_mapping_names_none():
    mafw = LabelMapping.from_file(MAPPINGS / "mafw.json")
    assert mafw.source_labels[:3] == ("anger", "disgust", "fear") and len(mafw.source_labels) == 11
    assert LabelMapping.from_file(MAPPINGS / "crema-d.json").source_labels == (
        "ANG",
        "DIS",
        "FEA",
        "HAP",
        "NEU",
        "SAD",
    )


def test_bad_label_mappings_are_refused(tmp_path):
    base = {"dataset": "toy", "source_labels": ["a", "b"]}
    cases = {
        "unmapped": ({**base, "mapping": {"a": "anger"}}, "'b' of toy are not mapped"),
        "unknown_target": ({**base, "mapping": {"a": "anger", "b": "joy"}}, "'joy' are not classes of the vocabulary"),
        "unknown_source": ({**base, "mapping": {"a": "anger", "b": None, "c": "fear"}}, "'c' are not labels of toy"),
        "unknown_key": ({**base, "mapping": {"a": None, "b": None}, "labels": []}, "unknown key"),
        "no_order": ({"dataset": "DFEW", "mapping": {}}, "give `source_labels`"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(LabelMappingError, match=message):
            LabelMapping.from_file(write_mapping(tmp_path, name, content))
    mapping = LabelMapping.from_file(write_mapping(tmp_path, "ok", {**base, "mapping": {"a": "fear", "b": None}}))
    mapped, dropped = mapping.map_entries([ListEntry("x", None, 0), ListEntry("y", None, 1), ListEntry("z", None, 0)])
    assert [entry.label for entry in mapped] == [BASIC_EMOTIONS.index("fear")] * 2 and dropped == 1
    with pytest.raises(LabelMappingError, match="index 2 is outside"):
        mapping.target_index(2)


# --------------------------------------------------------------------------------------------------------------------
# Mixtures and weighted sampling
# --------------------------------------------------------------------------------------------------------------------


class Numbers(torch.utils.data.Dataset):
    def __init__(self, values):
        self.values = list(values)
        self.epochs = []

    def __len__(self):
        return len(self.values)

    def __getitem__(self, index):
        return self.values[index]

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def test_mixture_dataset_samples_sources_by_weight():
    first, second = Numbers(range(10)), Numbers(range(100, 190))
    mixture = MixtureDataset([first, second], [3.0, 1.0], seed=0, num_samples=4000)
    items = [mixture[i] for i in range(len(mixture))]
    from_first = sum(item < 100 for item in items) / len(items)
    assert abs(from_first - 0.75) < 0.03  # weight 3 of 4, whatever the source sizes (10 vs 90)
    assert set(item for item in items if item < 100) == set(range(10))  # uniform within the source
    again = MixtureDataset([first, second], [3.0, 1.0], seed=0, num_samples=4000)
    assert [again[i] for i in range(50)] == items[:50]
    mixture.set_epoch(1)
    assert [mixture[i] for i in range(50)] != items[:50] and first.epochs[-1] == second.epochs[-1] == 1
    assert len(MixtureDataset([first, second], [1, 1])) == 100
    with pytest.raises(ValueError, match="positive weight"):
        MixtureDataset([first, second], [1.0, 0.0])


def test_test_split_guard_finds_clips_by_path_and_by_content(tmp_path):
    train_a = clip_folder(tmp_path, "a", 0)
    train_b = clip_folder(tmp_path, "b", 1)
    test_c = clip_folder(tmp_path, "c", 2)
    copy = shutil.copytree(test_c, tmp_path / "copy_of_c")  # same frames under another name
    assert clip_fingerprint(copy) == clip_fingerprint(test_c) != clip_fingerprint(train_a)
    test = [ListEntry(test_c, None, 0), ListEntry(train_b, None, 1)]
    train = [ListEntry(train_a, None, 0), ListEntry(train_b, None, 1), ListEntry(os.fspath(copy), None, 2)]
    with pytest.raises(TargetTestClipError) as caught:
        check_no_test_clips(train, test)
    message = str(caught.value)
    assert "2 training clip(s)" in message and f"{train_b} is {train_b}" in message and "same path" in message
    assert f"{copy} is {test_c}" in message and "same content" in message
    assert caught.value.overlaps[1] == (os.fspath(copy), test_c, "same content")
    check_no_test_clips(train[:1], test)  # no overlap: no error


def test_mixture_file_maps_each_source_and_refuses_test_clips(tmp_path, processor_wav_file):
    clips = [clip_folder(tmp_path, f"clip{i}", i) for i in range(4)]
    (tmp_path / "one.txt").write_text(f"{clips[0]} {processor_wav_file} 0\n{clips[1]} {processor_wav_file} calm\n")
    (tmp_path / "two.txt").write_text(f"{clips[2]} {processor_wav_file} 1\n")
    (tmp_path / "test.txt").write_text(f"{clips[3]} {processor_wav_file} whatever\n")
    write_mapping(tmp_path, "one", {"dataset": "one", "source_labels": ["angry", "calm"],
                                    "mapping": {"angry": "anger", "calm": "neutral"}})  # fmt: skip
    write_mapping(tmp_path, "two", {"dataset": "two", "source_labels": ["x", "fearful"],
                                    "mapping": {"x": None, "fearful": "fear"}})  # fmt: skip
    spec = {
        "vocabulary": ["anger", "fear", "neutral"],
        "sources": [
            {"train_file": "one.txt", "label_mapping": "one.json", "weight": 2},
            {"train_file": "two.txt", "label_mapping": "two.json"},
        ],
        "exclude_test_files": ["test.txt"],
    }
    (tmp_path / "mixture.json").write_text(json.dumps(spec))
    mixture = load_mixture(tmp_path / "mixture.json")
    assert mixture.id2label == {0: "anger", 1: "fear", 2: "neutral"}
    assert [(entry.video, entry.label) for entry in mixture.entries] == [(clips[0], 0), (clips[1], 2), (clips[2], 1)]
    assert [source.weight for source in mixture.sources] == [2.0, 1.0]
    mixture.check_test_splits()
    (tmp_path / "two.txt").write_text(f"{clips[2]} {processor_wav_file} 1\n{clips[3]} {processor_wav_file} 1\n")
    with pytest.raises(TargetTestClipError, match="clip3"):
        load_mixture(tmp_path / "mixture.json").check_test_splits()
    spec["sources"][1]["weight"] = -1
    (tmp_path / "mixture.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="weight must be positive"):
        load_mixture(tmp_path / "mixture.json")


# --------------------------------------------------------------------------------------------------------------------
# The three-stage recipe end to end
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_three_stages_end_to_end(tmp_path, processor_cropped_clip, processor_wav_file):
    # stage 1: pretraining from scratch on raw videos
    config_dir, stage1 = tmp_path / "config", tmp_path / "stage1"
    tiny_config().save_pretrained(config_dir)
    videos = tmp_path / "videos.txt"
    videos.write_text(f"{processor_cropped_clip} 0\n" * 4)
    completed = subprocess.run(
        [
            sys.executable, os.fspath(TRAINING / "run_pretraining.py"), "--config_name", os.fspath(config_dir),
            "--do_face_crop", "false", "--train_file", os.fspath(videos), "--per_device_train_batch_size", "2",
            "--max_steps", "2", "--learning_rate", "1e-3", "--output_dir", os.fspath(stage1), "--use_cpu",
        ],
        env=script_environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    # stage 2: two toy datasets with their own labels, aligned into one vocabulary; the target's test split is
    # kept out
    clips = [clip_folder(tmp_path, f"clip{i}", i) for i in range(11)]
    (tmp_path / "toy_a.txt").write_text("".join(f"{clips[i]} {processor_wav_file} {i % 2}\n" for i in range(4)))
    (tmp_path / "toy_b.txt").write_text("".join(f"{clips[i]} {processor_wav_file} {i % 3}\n" for i in range(4, 8)))
    write_mapping(tmp_path, "toy_a", {"dataset": "toy_a", "source_labels": ["happy", "sad"],
                                      "mapping": {"happy": "happiness", "sad": "sadness"}})  # fmt: skip
    write_mapping(tmp_path, "toy_b", {"dataset": "toy_b", "source_labels": ["ANG", "HAP", "SAD"],
                                      "mapping": {"ANG": "anger", "HAP": "happiness", "SAD": "sadness"}})  # fmt: skip
    (tmp_path / "target_train.txt").write_text(
        f"{clips[8]} {processor_wav_file} 0\n{clips[0]} {processor_wav_file} 1\n"
    )
    (tmp_path / "target_test.txt").write_text(
        f"{clips[9]} {processor_wav_file} 1\n{clips[10]} {processor_wav_file} 0\n"
    )
    mixture = {
        "vocabulary": ["anger", "happiness", "sadness"],
        "sources": [
            {"train_file": "toy_a.txt", "label_mapping": "toy_a.json", "weight": 1.0},
            {"train_file": "toy_b.txt", "label_mapping": "toy_b.json", "weight": 2.0},
        ],
        "exclude_test_files": ["target_test.txt"],
    }
    (tmp_path / "mixture.json").write_text(json.dumps(mixture))
    script = load_script("run_finetuning")
    stage2, stage3 = tmp_path / "stage2", tmp_path / "stage3"
    common = ["--do_face_crop", "false", "--per_device_train_batch_size", "2", "--use_cpu", "--report_to", "none",
              "--save_strategy", "no", "--do_train"]  # fmt: skip
    script.main(["--model_name_or_path", os.fspath(stage1), "--train_mixture", os.fspath(tmp_path / "mixture.json"),
                 "--output_dir", os.fspath(stage2), "--max_steps", "2", "--learning_rate", "1e-3", *common])  # fmt: skip
    stage2_model = AVFMAEForVideoClassification.from_pretrained(stage2)
    assert stage2_model.config.id2label == {0: "anger", 1: "happiness", 2: "sadness"}

    # stage 3: the target dataset from the stage-2 weights with a new head, evaluated on its test split
    results = script.main(
        ["--model_name_or_path", os.fspath(stage2), "--new_head", "--id2label", "calm,excited",
         "--train_file", os.fspath(tmp_path / "target_train.txt"), "--test_file", os.fspath(tmp_path / "target_test.txt"),
         "--output_dir", os.fspath(stage3), "--max_steps", "1", "--learning_rate", "1e-5", *common]
    )  # fmt: skip
    assert "test_uar" in results
    weights = [load_file(folder / "model.safetensors") for folder in (stage1, stage2, stage3)]
    key = "avfmae.video_embeddings.projection.weight"
    stage1_key = next(name for name in weights[0] if name.endswith("video_embeddings.projection.weight"))
    moved_in_stage2 = (weights[1][key] - weights[0][stage1_key]).abs().max().item()
    moved_in_stage3 = (weights[2][key] - weights[1][key]).abs().max().item()
    assert moved_in_stage2 > 1e-4 and moved_in_stage3 < 5e-5, "stage 3 starts from the stage-2 backbone"
    assert weights[2]["classifier.weight"].shape == (2, 64)

    # the guard: a target test clip in a stage-2 source stops stage 2 before training
    (tmp_path / "toy_a.txt").write_text(f"{clips[9]} {processor_wav_file} 0\n{clips[0]} {processor_wav_file} 1\n")
    with pytest.raises(TargetTestClipError, match="clip9"):
        script.main(["--model_name_or_path", os.fspath(stage1), "--train_mixture",
                     os.fspath(tmp_path / "mixture.json"), "--output_dir", os.fspath(tmp_path / "refused"),
                     "--max_steps", "1", *common])  # fmt: skip
