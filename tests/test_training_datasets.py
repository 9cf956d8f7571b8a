# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""`datasets` inputs of both training scripts: a folder saved with `save_to_disk` and a Hub dataset id (served by a
local stand-in of the Hub API), with media paths relative to the dataset."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from avfmae_hf import AVFMAEForPreTraining
from avfmae_hf.data_avfmae import FINGERPRINT_FILE, DatasetArguments
from avfmae_hf.errors_avfmae import ListFileError, ResumeError
from avfmae_hf.training_avfmae import ListEntry
from tests import test_training_scale
from tests.local_hub import LocalHub
from tests.test_training_scale import run_two_processes
from tests.test_training_scripts import ROOT, TRAINING, load_script, restore_logging  # noqa: F401


# the tiny model folders of the training-scale tests
tiny_config_dir = test_training_scale.tiny_config_dir
tiny_pretrained = test_training_scale.tiny_pretrained


def pretraining_arguments(config_dir, dataset_dir, output_dir, *extra) -> list[str]:
    return [
        "--config_name", os.fspath(config_dir), "--do_face_crop", "false", "--dataset_name", os.fspath(dataset_dir),
        "--output_dir", os.fspath(output_dir), "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
        "--logging_steps", "1", "--use_cpu", "--report_to", "none", *extra,
    ]  # fmt: skip


def save_clip_dataset(folder, clip, splits: dict[str, list[str]], labels: dict[str, list[str]] | None = None) -> None:
    """A `DatasetDict` saved to `folder` whose rows name clips by paths relative to `folder` (each name a copy of
    `clip` under `folder/clips/`, or, for names starting with `corrupt`, a file that is no video), with the class
    names `labels[split]` (default: a name no vocabulary knows, which pretraining must not read)."""
    import datasets

    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for names in splits.values():
        for name in names:
            if name.startswith("corrupt"):
                (folder / "clips" / name).write_bytes(b"\x00\x01 not a video " * 64)
            else:
                shutil.copyfile(clip, folder / "clips" / name)
    datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {
                    "video": [f"clips/{name}" for name in names],
                    "label": labels[split] if labels else ["no such class"] * len(names),
                }
            )
            for split, names in splits.items()
        }
    ).save_to_disk(os.fspath(folder))


def test_dataset_arguments_read_a_saved_split_with_paths_relative_to_the_folder(tmp_path, processor_cropped_clip):
    folder = tmp_path / "corpus"
    save_clip_dataset(folder, processor_cropped_clip, {"train": ["a.mp4", "b.mp4"], "test": ["c.mp4"]})
    arguments = DatasetArguments(dataset_name=os.fspath(folder), validation_split="test")
    train, validation = arguments.sources(None, None)
    assert (train, validation) == ("train", "test")
    assert arguments.read_entries("train", read_labels=False) == [
        ListEntry(os.fspath(folder / "clips" / "a.mp4"), None, None),
        ListEntry(os.fspath(folder / "clips" / "b.mp4"), None, None),
    ]
    with pytest.raises(ListFileError) as raised:  # labels are read (and checked) unless told otherwise
        arguments.read_entries("test", label2id={"calm": 0})
    assert raised.value.problems == [
        f"{folder}[test][0]: label 'no such class' is not a known class name; known names: calm."
    ]
    with pytest.raises(ValueError, match="list files .* or --dataset_name, not both"):
        arguments.sources("train.txt", None)
    assert DatasetArguments().sources("train.txt", None) == ("train.txt", None)


@pytest.mark.slow
def test_pretraining_trains_on_a_saved_dataset_skips_its_bad_clips_and_resumes_only_its_own_state(
    tmp_path, tiny_config_dir, processor_cropped_clip
):
    script = load_script("run_pretraining")
    corpus = tmp_path / "corpus"
    save_clip_dataset(
        corpus,
        processor_cropped_clip,
        {"train": ["a.mp4", "b.mp4", "c.mp4", "corrupt.mp4"], "validation": ["d.mp4", "e.mp4"]},
    )
    output_dir = tmp_path / "out"
    results = script.main(
        pretraining_arguments(
            tiny_config_dir,
            corpus,
            output_dir,
            "--max_steps",
            "2",
            "--save_steps",
            "1",
            "--validation_split",
            "validation",
            "--max_bad_clip_share",
            "0.25",
        )  # fmt: skip
    )
    assert results["completed_steps"] == 2 and results["eval_loss"] > 0
    assert results["bad_clips"] == [os.fspath(corpus / "clips" / "corrupt.mp4")]
    assert json.loads((output_dir / "train_results.json").read_text())["num_bad_clips"] == 1
    fingerprint = json.loads((output_dir / "step_1" / FINGERPRINT_FILE).read_text())
    assert fingerprint["dataset"]["num_clips"] == 4
    loaded = AVFMAEForPreTraining.from_pretrained(output_dir)
    assert loaded.config.video_config.hidden_size == 32

    other = tmp_path / "other"
    save_clip_dataset(other, processor_cropped_clip, {"train": ["a.mp4", "b.mp4"]})
    with pytest.raises(ResumeError, match=r"the training clips differ \(4 clips then, 2 now"):
        script.main(
            pretraining_arguments(
                tiny_config_dir,
                other,
                tmp_path / "resumed",
                "--max_steps",
                "2",
                "--resume_from_checkpoint",
                os.fspath(output_dir / "step_1"),
            )  # fmt: skip
        )


def test_pretraining_offers_only_the_dataset_flags_it_honours():
    help_text = load_script("run_pretraining").build_parser().format_help()
    for flag in ("--dataset_name", "--dataset_config_name", "--train_split", "--validation_split", "--video_column",
                 "--audio_column"):  # fmt: skip
        assert flag in help_text, flag
    for flag in ("--test_split", "--label_column"):
        assert flag not in help_text, flag
    with pytest.raises(ValueError, match=r"--train_file \(or --dataset_name\) is required"):
        load_script("run_pretraining").main(["--size", "base", "--output_dir", "unused"])


@pytest.mark.slow
def test_two_pretraining_processes_split_a_saved_dataset_into_disjoint_complete_halves(
    tmp_path, tiny_config_dir, processor_cropped_clip
):
    corpus = tmp_path / "corpus"
    save_clip_dataset(corpus, processor_cropped_clip, {"train": [f"clip_{index}.mp4" for index in range(8)]})
    arguments = pretraining_arguments(tiny_config_dir, corpus, tmp_path / "out", "--max_steps", "2")
    halves = run_two_processes("run_pretraining", tmp_path / "reports", arguments)
    # 8 clips, 2 processes x 2 per batch: the 2 steps are one epoch, 4 clips per process
    assert all(epoch == 0 for half in halves for epoch, _ in half)
    indices = [{index for _, index in half} for half in halves]
    assert [len(half) for half in halves] == [4, 4]
    assert not indices[0] & indices[1] and indices[0] | indices[1] == set(range(8))


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_finetuning_selects_checkpoints_on_a_test_split_only_when_asked(tmp_path, tiny_pretrained,
                                                                        processor_cropped_clip):  # fmt: skip
    corpus = tmp_path / "corpus"
    save_clip_dataset(
        corpus,
        processor_cropped_clip,
        {"train": ["a.mp4", "b.mp4"], "test": ["c.mp4"]},
        labels={"train": ["calm", "sad"], "test": ["happy"]},
    )
    arguments = [
        "--model_name_or_path", os.fspath(tiny_pretrained), "--id2label", "calm,happy,sad", "--dataset_name",
        os.fspath(corpus), "--test_split", "test", "--output_dir", os.fspath(tmp_path / "out"), "--do_train",
        "--do_eval", "--max_steps", "1", "--per_device_train_batch_size", "2", "--save_strategy", "no",
        "--use_cpu", "--report_to", "none",
    ]  # fmt: skip
    script = load_script("run_finetuning")
    with pytest.raises(ValueError, match=r"--validation_split and --test_split are the same split \(test\)"):
        script.main([*arguments, "--validation_split", "test"])
    results = script.main([*arguments, "--model_selection_split", "test"])
    assert results["eval_war"] in (0.0, 1.0) and "test_war" in results


# What runs against the local Hub, in a process of its own: a clean environment without HF_HUB_OFFLINE, and the Hub
# endpoint, cache and `datasets` constants read fresh from HF_ENDPOINT / HF_HOME.
HUB_CLIENT = """
import importlib.util, json, sys

from avfmae_hf.data_avfmae import DatasetArguments, load_dataset_split

result_file, finetuning = sys.argv[1], sys.argv[2:]
split = load_dataset_split("someone/emotion-clips", "validation")
arguments = DatasetArguments(dataset_name="someone/emotion-clips")
entries = arguments.read_entries("train", label2id={"calm": 0, "happy": 1, "sad": 2}, num_labels=3, with_labels=True)
spec = importlib.util.spec_from_file_location("run_finetuning", finetuning.pop(0))
script = importlib.util.module_from_spec(spec)
sys.modules["run_finetuning"] = script
spec.loader.exec_module(script)
results = script.main(finetuning)
with open(result_file, "w") as handle:
    json.dump({
        "validation_rows": split.to_list(),
        "entries": [[entry.video, entry.audio, entry.label] for entry in entries],
        "results": results,
    }, handle)
"""


@pytest.fixture
def hub_dataset_repository(tmp_path, processor_cropped_clip, processor_wav_file):
    """The files of a Hub dataset repository: JSONL splits whose video / audio columns name media files of the
    repository by relative paths, and the media."""
    repository = tmp_path / "repository"
    (repository / "clips").mkdir(parents=True)
    (repository / "audio").mkdir()
    for name in ("a", "b"):
        shutil.copyfile(processor_cropped_clip, repository / "clips" / f"{name}.mp4")
    shutil.copyfile(processor_wav_file, repository / "audio" / "a.m4a")
    rows = {
        "train": [
            {"video": "clips/a.mp4", "audio": "audio/a.m4a", "label": "sad"},
            {"video": "clips/b.mp4", "audio": None, "label": "calm"},
        ],
        "validation": [{"video": "clips/b.mp4", "audio": None, "label": "happy"}],
    }
    for split, split_rows in rows.items():
        (repository / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in split_rows))
    (repository / "README.md").write_text("# Emotion clips\n\nTwo short clips for tests.\n")
    return repository


@pytest.mark.slow
def test_a_hub_dataset_id_resolves_through_the_hub_and_its_relative_media_are_found_in_the_download(
    tmp_path, hub_dataset_repository, tiny_pretrained
):
    hf_home = tmp_path / "hf_home"
    output_dir = tmp_path / "finetuned"
    finetuning = [
        os.fspath(TRAINING / "run_finetuning.py"), "--model_name_or_path", os.fspath(tiny_pretrained),
        "--id2label", "calm,happy,sad", "--dataset_name", "someone/emotion-clips", "--validation_split",
        "validation", "--output_dir", os.fspath(output_dir), "--do_train", "--do_eval", "--max_steps", "1",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "1", "--save_strategy", "no",
        "--use_cpu", "--report_to", "none", "--no_mixup_cutmix",
    ]  # fmt: skip
    (tmp_path / "hub_client.py").write_text(HUB_CLIENT)
    with LocalHub({"someone/emotion-clips": hub_dataset_repository}) as hub:
        env = {
            "PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.fspath(ROOT), "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": os.fspath(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        completed = subprocess.run(
            [sys.executable, os.fspath(tmp_path / "hub_client.py"), os.fspath(tmp_path / "result.json"), *finetuning],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        commit = hub.commit("someone/emotion-clips")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())

    # the table came through the Hub's API and file routes, the media with the repository's download
    # (a.mp4 and b.mp4 have the same content: the Hub cache downloads it once and links the other, which one depends
    # on the order of the parallel downloads)
    assert "GET /api/datasets/someone/emotion-clips/revision/main" in hub.requests
    resolve = f"/datasets/someone/emotion-clips/resolve/{commit}/"
    for path in ("train.jsonl", "validation.jsonl", "audio/a.m4a"):
        assert f"GET {resolve}{path}" in hub.requests, path
    assert f"HEAD {resolve}clips/a.mp4" in hub.requests and f"HEAD {resolve}clips/b.mp4" in hub.requests
    assert f"GET {resolve}clips/a.mp4" in hub.requests or f"GET {resolve}clips/b.mp4" in hub.requests
    assert not [request for request in hub.unanswered if "emotion-clips" in request]

    assert result["validation_rows"] == [{"video": "clips/b.mp4", "audio": None, "label": "happy"}]
    snapshot = hf_home / "hub" / "datasets--someone--emotion-clips" / "snapshots" / commit
    assert result["entries"] == [
        [os.fspath(snapshot / "clips" / "a.mp4"), os.fspath(snapshot / "audio" / "a.m4a"), 2],
        [os.fspath(snapshot / "clips" / "b.mp4"), None, 0],
    ]
    assert result["results"]["epoch"] == 1.0 and result["results"]["eval_war"] in (0.0, 1.0)
    assert (output_dir / "model.safetensors").is_file()
