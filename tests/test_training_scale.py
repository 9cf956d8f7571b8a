# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Training at scale: every rank its own clips, list problems reported before the first step, clips that fail to
decode skipped and counted, safe resume, Hub-ready folders from both scripts, inputs in JSONL and class folders."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from huggingface_hub import HfApi

from avfmae_hf import AVFMAEForPreTraining, AVFMAEProcessor
from avfmae_hf.data_avfmae import (
    BAD_CLIPS_KEY,
    FINGERPRINT_FILE,
    BadClipLog,
    BadClipSkippingDataset,
    check_fingerprint,
    check_launch,
    dataset_entries,
    processed_dataset,
    run_fingerprint,
    save_fingerprint,
    steps_from_ratio,
)
from avfmae_hf.errors_avfmae import BadClipsError, CorruptVideoError, ListFileError, ResumeError
from avfmae_hf.hub_avfmae import remote_code_auto_map
from avfmae_hf.training_avfmae import (
    AVFMAEDataCollator,
    ListEntry,
    class_folder_names,
    parse_arguments,
    read_list_file,
)
from tests.test_training_scripts import ROOT, TRAINING, load_script, restore_logging, script_environment  # noqa: F401
from tests.tiny_configs import tiny_config


WORKER = ROOT / "tests" / "data_order_worker.py"


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
def tiny_config_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_config")
    tiny_config().save_pretrained(folder)
    return folder


@pytest.fixture
def corrupt_clip(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"\x00\x01 not a video " * 64)
    return path


def pretraining_command(config_dir, train_file, output_dir, *extra) -> list[str]:
    return [
        sys.executable, os.fspath(TRAINING / "run_pretraining.py"), "--config_name", os.fspath(config_dir),
        "--do_face_crop", "false", "--train_file", os.fspath(train_file), "--output_dir", os.fspath(output_dir),
        "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--logging_steps", "1", "--use_cpu",
        *extra,
    ]  # fmt: skip


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=script_environment(), capture_output=True, text=True, timeout=600)


# --------------------------------------------------------------------------------------------------------------------
# 1. Every rank its own clips (2 processes), and resume keeps it
# --------------------------------------------------------------------------------------------------------------------


def run_two_processes(script: str, reports: Path, arguments: list[str]) -> list[list[list[int]]]:
    reports.mkdir()
    torchrun = shutil.which("torchrun", path=os.fspath(Path(sys.executable).parent))
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    completed = subprocess.run(
        [
            *launcher,
            "--standalone",
            "--nproc_per_node",
            "2",
            os.fspath(WORKER),
            script,
            os.fspath(reports),
            *arguments,
        ],
        env=script_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    # the ranks' own reports are the result; the launcher's exit status is not relied on
    paths = sorted(reports.glob("rank_*.json"))
    assert [path.name for path in paths] == ["rank_0.json", "rank_1.json"], (
        completed.stdout[-3000:] + completed.stderr[-3000:]
    )
    return [json.loads(path.read_text())["loaded"] for path in paths]


def by_epoch(loaded: list[list[int]]) -> dict[int, list[int]]:
    epochs = {}
    for epoch, index in loaded:
        epochs.setdefault(epoch, []).append(index)
    return epochs


def test_a_launch_whose_processes_did_not_join_one_run_is_refused(monkeypatch, caplog):
    monkeypatch.setenv("WORLD_SIZE", "2")
    # torchrun without --use_cpu on a machine without GPUs: two runs of one process each
    with pytest.raises(RuntimeError, match=r"started 2 processes \(WORLD_SIZE=2\) but this run joined 1.*--use_cpu"):
        check_launch(1, "NO")
    check_launch(2, "MULTI_CPU", use_cpu=True)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with caplog.at_level(logging.WARNING, logger="avfmae_hf"):
        check_launch(2, "MULTI_CPU", use_cpu=True)
    assert "asks for FSDP, but the run is MULTI_CPU" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="avfmae_hf"):
        check_launch(2, "FSDP")
    assert "FSDP" not in caplog.text


def test_step_intervals_below_one_are_shares_of_the_run():
    assert [steps_from_ratio(value, 10) for value in (0.5, 0.25, 0.01, 1, 3, 3.0)] == [5, 3, 1, 1, 3, 3]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["run_pretraining", "run_finetuning"])
def test_two_processes_split_every_epoch_into_disjoint_complete_halves_and_resume_keeps_them(
    script, tmp_path, tiny_pretrained, processor_cropped_clip
):
    train = tmp_path / "train.txt"  # 8 clips (one file, listed 8 times: what counts is the index)
    train.write_text("".join(f"{processor_cropped_clip} {index % 3}\n" for index in range(8)))
    common = [
        "--train_file", os.fspath(train), "--per_device_train_batch_size", "2", "--max_steps", "4",
        "--save_steps", "1", "--learning_rate", "1e-3", "--use_cpu", "--report_to", "none",
    ]  # fmt: skip
    if script == "run_pretraining":
        common += ["--model_name_or_path", os.fspath(tiny_pretrained), "--do_face_crop", "false"]
        checkpoint = "step_1"
    else:
        common += ["--model_name_or_path", os.fspath(tiny_pretrained), "--id2label", "calm,happy,sad", "--do_train"]
        checkpoint = "checkpoint-1"
    straight_dir = tmp_path / "straight"
    straight = run_two_processes(
        script, tmp_path / "straight_reports", [*common, "--output_dir", os.fspath(straight_dir)]
    )
    # 8 clips, 2 processes x 2 per batch: 2 steps per epoch, 4 steps are 2 epochs of 4 clips per process
    for epoch in (0, 1):
        halves = [by_epoch(loaded)[epoch] for loaded in straight]
        assert [len(half) for half in halves] == [4, 4], epoch
        assert not set(halves[0]) & set(halves[1]), f"epoch {epoch}: a clip went to both ranks"
        assert set(halves[0]) | set(halves[1]) == set(range(8)), f"epoch {epoch}: a clip went to no rank"
    assert by_epoch(straight[0])[0] != by_epoch(straight[0])[1], "each epoch is shuffled anew"

    resumed = run_two_processes(
        script,
        tmp_path / "resumed_reports",
        [*common, "--output_dir", os.fspath(tmp_path / "resumed"), "--resume_from_checkpoint",
         os.fspath(straight_dir / checkpoint)],
    )  # fmt: skip
    # the resumed run skips each rank's first batch (2 clips) and then loads exactly what the straight run did
    assert resumed == [loaded[2:] for loaded in straight]


# --------------------------------------------------------------------------------------------------------------------
# 2. List problems before the first step; bad clips mid-epoch
# --------------------------------------------------------------------------------------------------------------------


def test_every_list_problem_is_reported_at_once_with_its_line(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    listing = tmp_path / "train.txt"
    listing.write_text(
        f"{clip} 0\n"
        f"{clip} 7\n"  # out of range for 3 classes
        "# a comment\n"
        f"{clip} angry\n"  # unknown name
        f"{tmp_path / 'missing.mp4'} 1\n"  # no such file
        f"{clip} a b c\n"  # too many fields
        f"{clip}\n"  # no label, and labels are required
    )
    with pytest.raises(ListFileError) as raised:
        read_list_file(listing, label2id={"calm": 0, "happy": 1, "sad": 2}, num_labels=3, with_labels=True,
                       check_paths=True)  # fmt: skip
    error = raised.value
    assert error.problems == [  # in the order of the lines
        f"{listing}:2: label 7 is out of range for 3 classes (0-2).",
        f"{listing}:4: label 'angry' is neither a class index nor a known class name; known names: calm, happy, sad.",
        f"{listing}:5: video '{tmp_path / 'missing.mp4'}' does not exist.",
        f"{listing}:6: expected `<frames_dir> <audio> <label>`, `<video> <label>` or `<video>`, got 4 fields in "
        f"'{clip} a b c' (paths cannot contain spaces in this format; use a CSV file).",
        f"{listing}:7: has no label.",
    ]
    assert str(error).startswith(f"{listing}: 5 problems:\n")

    regression = tmp_path / "regression.csv"
    regression.write_text(f"video,label\n{clip},0.1 0.2\n{clip},0.5\n{clip},high\n")
    with pytest.raises(ListFileError) as raised:
        read_list_file(regression, problem_type="regression", num_labels=2)
    assert raised.value.problems == [
        f"{regression}:3: 1 regression targets, the model predicts 2.",
        f"{regression}:4: regression targets must be numbers, got ['high'].",
    ]
    malformed = tmp_path / "malformed.csv"
    malformed.write_text(f'video,label\n{clip},1,extra,more\n{clip},0\n"{clip},2\n{clip},1\n')
    with pytest.raises(ListFileError) as raised:
        read_list_file(malformed)
    assert raised.value.problems == [
        f"{malformed}:2: has 4 fields; the header names 2 (video, label).",
        f"{malformed}:5: a quoted field runs over several lines (a quote is not closed).",
    ]


def test_jsonl_lists_and_class_folders_are_read(tmp_path, caplog):
    listing = tmp_path / "train.jsonl"
    listing.write_text('{"video": "a.mp4", "label": "sad"}\n{"video": "frames/b", "audio": "b.wav", "label": 0}\n')
    assert read_list_file(listing, label2id={"calm": 0, "sad": 1}) == [
        ListEntry(os.fspath(tmp_path / "a.mp4"), None, 1),
        ListEntry(os.fspath(tmp_path / "frames/b"), os.fspath(tmp_path / "b.wav"), 0),
    ]
    listing.write_text('{"video": "a.mp4", "label": "sad"}\n{"audio": "b.wav"}\n["c.mp4"]\nnot json\n')
    with pytest.raises(ListFileError) as raised:
        read_list_file(listing)
    assert [problem.split(": ", 1)[0] for problem in raised.value.problems] == [
        f"{listing}:{line}" for line in (1, 2, 3, 4)
    ]
    assert "has no `video`" in raised.value.problems[1] and "not a JSON object" in raised.value.problems[3]
    regression = tmp_path / "values.jsonl"
    regression.write_text('{"video": "c.mp4", "label": [0.5, -1]}\n')
    assert read_list_file(regression, problem_type="regression") == [
        ListEntry(os.fspath(tmp_path / "c.mp4"), None, (0.5, -1.0))
    ]

    classes = tmp_path / "classes"
    for name in ("sad/s1.mp4", "calm/c1.mp4", "calm/c2", "calm/c2.wav", "calm/.hidden", "calm/notes.txt",
                 "sad/Thumbs.db"):  # fmt: skip
        path = classes / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("c2"):
            path.mkdir()
        else:
            path.write_bytes(b"")
    assert class_folder_names(classes) == ["calm", "sad"]
    with caplog.at_level(logging.WARNING):
        assert read_list_file(classes) == [
            ListEntry(os.fspath(classes / "calm/c1.mp4"), None, 0),
            ListEntry(os.fspath(classes / "calm/c2"), os.fspath(classes / "calm/c2.wav"), 0),
            ListEntry(os.fspath(classes / "sad/s1.mp4"), None, 1),
        ]
    assert f"{classes}: ignored 2 file(s) that are neither videos" in caplog.text  # notes.txt, Thumbs.db
    assert [entry.label for entry in read_list_file(classes, label2id={"sad": 0, "calm": 1})] == [1, 1, 0]
    with pytest.raises(ListFileError, match="class folder 'sad' is not a known class name"):
        read_list_file(classes, label2id={"calm": 0})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ListFileError, match="no class subfolders"):
        read_list_file(tmp_path / "empty")
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"video": ["a.mp4"]}).save_to_disk(saved)
    with pytest.raises(ListFileError, match="saved with save_to_disk, not a list; pass it as --dataset_name"):
        read_list_file(saved)


def test_a_one_column_csv_and_lists_read_without_their_labels(tmp_path):
    one_column = tmp_path / "videos.csv"
    one_column.write_text("video\nclips/a b.mp4\nc.mp4\n")  # a path with a space, no comma anywhere
    assert read_list_file(one_column) == [
        ListEntry(os.fspath(tmp_path / "clips/a b.mp4")), ListEntry(os.fspath(tmp_path / "c.mp4"))
    ]  # fmt: skip
    # fine-tuning lists with class names serve pretraining, which reads no labels
    named = {"official.txt": "frames/a a.wav calm\nb.mp4 sad\n", "named.csv": "video,label\nb.mp4,sad\n",
             "named.jsonl": '{"video": "b.mp4", "label": ["sad", 2]}\n'}  # fmt: skip
    for name, text in named.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ListFileError, match="neither a class index nor a known class name"):
            read_list_file(tmp_path / name)
        entries = read_list_file(tmp_path / name, read_labels=False)
        assert entries and all(entry.label is None for entry in entries), name
    assert read_list_file(tmp_path / "official.txt", read_labels=False)[0] == ListEntry(
        os.fspath(tmp_path / "frames/a"), os.fspath(tmp_path / "a.wav")
    )


class FlakyDataset(torch.utils.data.Dataset):
    """Clips whose indices are in `bad` fail to decode."""

    def __init__(self, size: int, bad: set[int]):
        self.entries = [ListEntry(f"clip_{index}.mp4") for index in range(size)]
        self.bad = bad
        self.epoch = 0

    def __len__(self):
        return len(self.entries)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, index):
        if index in self.bad:
            raise CorruptVideoError("the file is not a readable video.", source=self.entries[index].video)
        return {"pixel_values": torch.full((2,), float(index))}


def test_bad_clips_are_replaced_by_the_next_readable_clip_and_reported(caplog):
    dataset = BadClipSkippingDataset(FlakyDataset(5, bad={1, 2, 4}))
    with caplog.at_level(logging.WARNING):
        item = dataset[1]
    assert item["pixel_values"].tolist() == [3.0, 3.0]  # clips 1 and 2 fail, clip 3 takes their place
    assert [(index, clip) for index, clip, _ in item[BAD_CLIPS_KEY]] == [(1, "clip_1.mp4"), (2, "clip_2.mp4")]
    assert "Skipping clip 1 (clip_1.mp4)" in caplog.text and "not a readable video" in caplog.text
    assert dataset[4]["pixel_values"].tolist() == [0.0, 0.0]  # wraps around
    assert dataset[0][BAD_CLIPS_KEY] == []
    dataset.set_epoch(3)
    assert dataset.dataset.epoch == 3 and dataset.entries[0].video == "clip_0.mp4"

    batch = AVFMAEDataCollator()([dataset[1], dataset[0], dataset[4]])
    assert batch["pixel_values"].shape == (3, 2)
    assert [index for index, _, _ in batch[BAD_CLIPS_KEY]] == [1, 2, 4]

    with pytest.raises(BadClipsError, match="None of the 3 clips could be read"):
        BadClipSkippingDataset(FlakyDataset(3, bad={0, 1, 2}))[0]


def test_in_a_run_a_skipped_clip_is_warned_about_when_its_batch_is_counted(caplog):
    # a loader's workers prepare batches ahead; a run that stops never takes them, so their clips are warned
    # about when the loop hands a batch to the log, never before
    dataset = BadClipSkippingDataset(FlakyDataset(5, bad={1}), warn=False)
    log = BadClipLog(num_clips=5)
    with caplog.at_level(logging.WARNING):
        ahead = dataset[1]
        assert caplog.text == ""
        log.record(ahead[BAD_CLIPS_KEY])
    assert caplog.text.count("Skipping clip 1 (clip_1.mp4), it could not be read") == 1
    assert log.synchronize() == 1 and log.summary()["bad_clips"][0]["clip"] == "clip_1.mp4"


def test_bad_clip_log_counts_distinct_clips_against_the_allowed_share(tmp_path):
    log = BadClipLog(num_clips=40, max_share=0.05)  # at most 2 bad clips
    log.record([(3, "a.mp4", "broken")])
    log.record([(3, "a.mp4", "broken"), (7, "b.mp4", "broken")])
    assert log.synchronize() == 2 and not log.exceeded
    log.record([(7, "b.mp4", "broken")])  # the same clip in a later epoch
    assert log.synchronize() == 0 and not log.exceeded
    log.record([(9, "c.mp4", "broken")])
    log.synchronize()
    assert log.exceeded
    message = str(log.error("out/step_5"))
    assert (
        "3 of 40 clips could not be read, more than the allowed share 0.05 (2 clips): a.mp4, b.mp4, c.mp4" in message
    )
    assert "saved to out/step_5" in message
    summary = json.loads(log.save(tmp_path).read_text())
    assert summary["num_bad_clips"] == 3 and [clip["clip"] for clip in summary["bad_clips"]] == [
        "a.mp4",
        "b.mp4",
        "c.mp4",
    ]
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        BadClipLog(10, max_share=1.5)


@pytest.mark.slow
def test_pretraining_skips_an_unreadable_clip_and_stops_above_the_allowed_share(
    tmp_path, tiny_config_dir, processor_cropped_clip, corrupt_clip
):
    train = tmp_path / "train.txt"
    train.write_text(f"{processor_cropped_clip}\n" * 3 + f"{corrupt_clip}\n")
    kept = tmp_path / "kept"
    completed = run(
        pretraining_command(tiny_config_dir, train, kept, "--max_steps", "2", "--max_bad_clip_share", "0.25")
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"Skipping clip 3 ({corrupt_clip})" in completed.stdout + completed.stderr
    results = json.loads((kept / "train_results.json").read_text())
    assert results["completed_steps"] == 2
    assert results["num_bad_clips"] == 1 and results["bad_clips"] == [os.fspath(corrupt_clip)]
    assert json.loads((kept / "bad_clips.json").read_text())["bad_clips"][0]["clip"] == os.fspath(corrupt_clip)

    stopped = tmp_path / "stopped"
    completed = run(
        pretraining_command(tiny_config_dir, train, stopped, "--max_steps", "2", "--max_bad_clip_share", "0")
    )
    assert completed.returncode != 0
    assert "BadClipsError: 1 of 4 clips could not be read, more than the allowed share 0 (0 clips)" in completed.stderr
    saved = sorted(stopped.glob("step_*"))
    assert len(saved) == 1 and (saved[0] / FINGERPRINT_FILE).is_file() and (saved[0] / "optimizer.bin").is_file()
    assert f"The training state was saved to {saved[0]}" in completed.stderr
    assert not (stopped / "model.safetensors").exists()


# --------------------------------------------------------------------------------------------------------------------
# 8. Safe resume
# --------------------------------------------------------------------------------------------------------------------


def test_fingerprints_name_what_differs(tmp_path):
    entries = [ListEntry("a.mp4", None, 0), ListEntry("b.mp4", None, 1)]
    fingerprint = run_fingerprint(tiny_config(), entries, per_device_train_batch_size=2, num_processes=1)
    save_fingerprint(tmp_path, fingerprint)
    check_fingerprint(tmp_path, run_fingerprint(tiny_config(), list(entries), per_device_train_batch_size=2,
                                                num_processes=1))  # fmt: skip
    changes = {
        "the model config differs": run_fingerprint(tiny_config(mask_ratio=0.5), entries, per_device_train_batch_size=2,
                                                    num_processes=1),
        "the training clips differ": run_fingerprint(tiny_config(), entries[::-1], per_device_train_batch_size=2,
                                                     num_processes=1),
        "the batch layout differs": run_fingerprint(tiny_config(), entries, per_device_train_batch_size=2,
                                                    num_processes=2),
    }  # fmt: skip
    for expected, other in changes.items():
        with pytest.raises(ResumeError, match=f"Cannot resume from {tmp_path}: {expected}"):
            check_fingerprint(tmp_path, other)
    with pytest.raises(ResumeError, match=r"the model config differs \(mask_ratio: None then, 0.5 now\)"):
        check_fingerprint(tmp_path, changes["the model config differs"])


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, tiny_config_dir, processor_cropped_clip):
    """A 2-step pretraining run (4 clips, 2 per batch) with a checkpoint after every step."""
    folder = tmp_path_factory.mktemp("pretrained_run")
    train = folder / "train.txt"
    train.write_text(f"{processor_cropped_clip} 0\n" * 4)
    output_dir = folder / "out"
    completed = run(pretraining_command(tiny_config_dir, train, output_dir, "--max_steps", "2", "--save_steps", "1"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    return SimpleNamespace(train=train, output_dir=output_dir)


@pytest.mark.slow
def test_pretraining_refuses_a_checkpoint_of_another_run_or_one_already_finished(
    tmp_path, tiny_config_dir, pretrained_run, processor_cropped_clip
):
    step_1, step_2 = pretrained_run.output_dir / "step_1", pretrained_run.output_dir / "step_2"
    other_list = tmp_path / "other.txt"
    other_list.write_text(f"{processor_cropped_clip} 0\n" * 6)
    cases = [
        (pretrained_run.train, ["--per_device_train_batch_size", "1"], step_1, "the batch layout differs"),
        (other_list, [], step_1, "the training clips differ (4 clips then, 6 now"),
        (pretrained_run.train, [], step_2, "step_2 has already completed 2 of --max_steps 2: nothing to train"),
    ]
    for train, extra, checkpoint, expected in cases:
        output_dir = tmp_path / f"out_{len(extra)}_{checkpoint.name}_{train.stem}"
        command = pretraining_command(tiny_config_dir, train, output_dir, "--max_steps", "2", *extra)
        completed = run([*command, "--resume_from_checkpoint", os.fspath(checkpoint)])
        assert completed.returncode != 0
        assert (
            "ResumeError" in completed.stderr
            and expected in completed.stderr.replace("\n", " ")
            or (pytest.fail(completed.stderr[-2000:]))
        )
        assert not (output_dir / "model.safetensors").exists(), "nothing was trained or saved"

    finished = tmp_path / "finished"
    command = pretraining_command(tiny_config_dir, pretrained_run.train, finished, "--max_steps", "2")
    completed = run([*command, "--resume_from_checkpoint", os.fspath(step_2), "--allow_finished_resume"])
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "already completed 2 of --max_steps 2" in completed.stdout + completed.stderr
    assert json.loads((finished / "train_results.json").read_text())["completed_steps"] == 2

    # a rerun into a folder that holds steps goes on from the newest one (and says so), never over them
    rerun = tmp_path / "rerun"
    shutil.copytree(pretrained_run.output_dir, rerun)
    completed = run(pretraining_command(tiny_config_dir, pretrained_run.train, rerun, "--max_steps", "2"))
    output = (completed.stdout + completed.stderr).replace("\n", " ")
    assert completed.returncode != 0 and f"Resuming from {rerun / 'step_2'}, found in --output_dir" in output
    assert "step_2 has already completed 2 of --max_steps 2" in output


def finetuning_arguments(tiny_pretrained, train, output_dir, *extra) -> list[str]:
    return [
        "--model_name_or_path", os.fspath(tiny_pretrained), "--id2label", "calm,happy,sad",
        "--train_file", os.fspath(train), "--output_dir", os.fspath(output_dir), "--do_train",
        "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--save_steps", "1",
        "--use_cpu", "--report_to", "none", *extra,
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_finetuning_auto_resume_warns_and_refuses_a_finished_or_foreign_checkpoint(
    tmp_path, tiny_pretrained, processor_cropped_clip, caplog
):
    train = tmp_path / "train.txt"
    train.write_text(f"{processor_cropped_clip} 0\n{processor_cropped_clip} 2\n" * 2)
    output_dir = tmp_path / "out"
    script = load_script("run_finetuning")
    script.main(finetuning_arguments(tiny_pretrained, train, output_dir, "--max_steps", "2"))
    assert json.loads((output_dir / "checkpoint-2" / FINGERPRINT_FILE).read_text())["batch_layout"] == {
        "gradient_accumulation_steps": 1,
        "num_processes": 1,
        "per_device_train_batch_size": 2,
    }
    with caplog.at_level(logging.WARNING), pytest.raises(ResumeError, match="already completed 2 of --max_steps 2"):
        script.main(finetuning_arguments(tiny_pretrained, train, output_dir, "--max_steps", "2"))
    warnings = [record for record in caplog.records if "Resuming from" in record.getMessage()]
    assert warnings and warnings[0].levelno == logging.WARNING
    assert f"checkpoint-2, found in --output_dir {output_dir}" in warnings[0].getMessage()
    with pytest.raises(ResumeError, match="the batch layout differs"):
        script.main(finetuning_arguments(tiny_pretrained, train, output_dir, "--max_steps", "3",
                                         "--gradient_accumulation_steps", "2"))  # fmt: skip
    results = script.main(finetuning_arguments(tiny_pretrained, train, output_dir, "--max_steps", "2",
                                               "--allow_finished_resume"))  # fmt: skip
    assert results["train_bad_clips"] == 0


# --------------------------------------------------------------------------------------------------------------------
# 3. Hub-ready folders and uploads; no flag a script cannot honour
# --------------------------------------------------------------------------------------------------------------------

REMOTE_LOADER = r"""
import importlib.abc
import json
import sys

import_path, folders, result_path = json.loads(sys.argv[1])


class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "avfmae_hf":
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, BlockPackage())
sys.path.extend(import_path)
import transformers

result = {}
for folder, auto_model in folders:
    model = getattr(transformers, auto_model).from_pretrained(folder, trust_remote_code=True)
    processor = transformers.AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    result[folder] = {
        "model": [type(model).__name__, type(model).__module__.split(".")[0]],
        "processor": type(processor).__name__,
        "parameter_sum": float(sum(parameter.double().sum() for parameter in model.parameters())),
    }
    if auto_model == "AutoModelForVideoClassification":  # a classifier declares its pipeline and carries its code
        result[folder]["pipeline"] = type(transformers.pipeline(model=folder, trust_remote_code=True)).__name__
result["package_in_modules"] = sorted(name for name in sys.modules if name.split(".")[0] == "avfmae_hf")
with open(result_path, "w") as handle:
    json.dump(result, handle)
"""


def load_without_the_package(tmp_path, folders: list[tuple[Path, str]]) -> dict:
    (tmp_path / "remote_loader.py").write_text(REMOTE_LOADER)
    site_packages = [path for path in sys.path if path and not (Path(path) / "avfmae_hf").exists()]
    arguments = [site_packages, [[os.fspath(folder), auto] for folder, auto in folders], str(tmp_path / "result.json")]
    env = {"PATH": os.environ.get("PATH", ""), "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1",
           "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(tmp_path / "remote_loader.py"), json.dumps(arguments)],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((tmp_path / "result.json").read_text())


def assert_hub_ready(folder: Path) -> None:
    assert json.loads((folder / "config.json").read_text())["auto_map"] == remote_code_auto_map()
    assert {"configuration_avfmae.py", "modeling_avfmae.py", "processing_avfmae.py"} <= {
        path.name for path in folder.glob("*.py")
    }
    assert (folder / "processor_config.json").is_file()
    assert "trust_remote_code=True" in (folder / "README.md").read_text()
    # every declared pipeline's code is in the folder (a classifier declares one)
    for pipeline in json.loads((folder / "config.json").read_text()).get("custom_pipelines", {}).values():
        assert (folder / f"{pipeline['impl'].split('.')[0]}.py").is_file(), pipeline


@pytest.mark.slow
def test_pretraining_checkpoints_and_output_load_with_remote_code_only(tmp_path, pretrained_run):
    folders = [pretrained_run.output_dir / "step_1", pretrained_run.output_dir]
    for folder in folders:
        assert_hub_ready(folder)
    result = load_without_the_package(tmp_path, [(folder, "AutoModelForPreTraining") for folder in folders])
    assert result.pop("package_in_modules") == []
    for folder in folders:
        loaded = result[os.fspath(folder)]
        assert loaded["model"] == ["AVFMAEForPreTraining", "transformers_modules"]
        assert loaded["processor"] == "AVFMAEProcessor"
        local = AVFMAEForPreTraining.from_pretrained(folder)
        assert loaded["parameter_sum"] == pytest.approx(
            float(sum(parameter.detach().double().sum() for parameter in local.parameters())), rel=1e-12
        )


@pytest.fixture
def fake_hub(monkeypatch):
    """Replaces the Hub API: records the commits made (with the committed files' content)."""
    hub = SimpleNamespace(commits=[])

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        files = {operation.path_in_repo: Path(operation.path_or_fileobj).read_bytes() for operation in operations}
        hub.commits.append(SimpleNamespace(repo_id=repo_id, files=files, kwargs=kwargs))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc", oid="0123abc")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return hub


def assert_hub_ready_commit(commit, repo_id: str) -> None:
    assert commit.repo_id == repo_id
    assert json.loads(commit.files["config.json"])["auto_map"] == remote_code_auto_map()
    assert {"configuration_avfmae.py", "modeling_avfmae.py", "processing_avfmae.py", "processor_config.json",
            "model.safetensors", "README.md"} <= set(commit.files)  # fmt: skip
    assert f'from_pretrained("{repo_id}", trust_remote_code=True' in commit.files["README.md"].decode()
    assert not any(name.startswith(("step_", "checkpoint-")) for name in commit.files)


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_finetuning_checkpoints_and_upload_are_hub_ready(tmp_path, tiny_pretrained, processor_cropped_clip, fake_hub):
    train = tmp_path / "train.txt"
    train.write_text(f"{processor_cropped_clip} 0\n{processor_cropped_clip} 2\n")
    output_dir = tmp_path / "out"
    load_script("run_finetuning").main(
        finetuning_arguments(tiny_pretrained, train, output_dir, "--max_steps", "1", "--push_to_hub",
                             "--hub_model_id", "someone/tiny-finetuned", "--hub_private_repo", "true")
    )  # fmt: skip
    for folder in (output_dir / "checkpoint-1", output_dir):
        assert_hub_ready(folder)
    (commit,) = fake_hub.commits
    assert_hub_ready_commit(commit, "someone/tiny-finetuned")
    folders = [output_dir / "checkpoint-1", output_dir]
    result = load_without_the_package(tmp_path, [(folder, "AutoModelForVideoClassification") for folder in folders])
    for folder in folders:
        assert result[os.fspath(folder)]["model"] == ["AVFMAEForVideoClassification", "transformers_modules"]
        assert result[os.fspath(folder)]["pipeline"] == "AVFMAEAudioVideoClassificationPipeline"


@pytest.mark.slow
def test_pretraining_push_to_hub_uploads_a_hub_ready_folder(
    tmp_path, tiny_config_dir, processor_cropped_clip, fake_hub
):
    train = tmp_path / "train.txt"
    train.write_text(f"{processor_cropped_clip}\n" * 2)
    script = load_script("run_pretraining")
    command = pretraining_command(tiny_config_dir, train, tmp_path / "out", "--max_steps", "1", "--push_to_hub",
                                  "--hub_model_id", "someone/tiny-pretrained")  # fmt: skip
    script.main(command[2:])
    (commit,) = fake_hub.commits
    assert_hub_ready_commit(commit, "someone/tiny-pretrained")


def test_scripts_offer_only_flags_they_honour(tmp_path):
    pretraining = load_script("run_pretraining").build_parser()
    finetuning = load_script("run_finetuning").build_parser()
    pretraining_help, finetuning_help = pretraining.format_help(), finetuning.format_help()
    for flag in ("--push_to_hub", "--hub_model_id", "--max_steps", "--max_bad_clip_share", "--allow_finished_resume"):
        assert flag in pretraining_help and flag in finetuning_help, flag
    for flag in ("--deepspeed", "--fsdp", "--label_smoothing_factor", "--hub_strategy", "--eval_accumulation_steps"):
        assert flag not in pretraining_help, flag
    for flag in ("--hub_strategy", "--hub_always_push", "--do_predict"):
        assert flag not in finetuning_help, flag
    assert "--label_smoothing_factor" in finetuning_help
    common = ["--train_file", "videos.txt", "--size", "base", "--output_dir", os.fspath(tmp_path)]
    with pytest.raises(ValueError, match=r"not used by the HfArgumentParser: \['--deepspeed'"):
        parse_arguments(pretraining, [*common, "--deepspeed", "ds.json"])
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"fsdp": "full_shard"}))
    with pytest.raises(ValueError, match="unknown arguments: fsdp"):
        parse_arguments(pretraining, [os.fspath(recipe), *common])
    script = load_script("run_pretraining")
    # a mistyped local folder is named as such, not reported as a failed download
    with pytest.raises(FileNotFoundError, match=r"--config_name \./no/such/config: no such file or folder"):
        script.main(["--train_file", "videos.txt", "--config_name", "./no/such/config", "--output_dir",
                     os.fspath(tmp_path), "--use_cpu"])  # fmt: skip
    # choices pretraining cannot honour are refused before anything is loaded
    with pytest.raises(ValueError, match="--save_strategy best needs a metric"):
        script.main([*common, "--save_strategy", "best", "--use_cpu"])
    with pytest.raises(ValueError, match="--report_to no_such_tracker: not installed"):
        script.main([*common, "--report_to", "no_such_tracker", "--use_cpu"])


# --------------------------------------------------------------------------------------------------------------------
# 6. Accelerate configs
# --------------------------------------------------------------------------------------------------------------------


def test_shipped_accelerate_configs_load_and_shard_by_the_models_layers():
    from accelerate.commands.config.config_args import ClusterConfig

    from avfmae_hf.modeling_avfmae import AVFMAEPreTrainedModel

    folder = TRAINING / "accelerate_configs"
    configs = {path.stem: ClusterConfig.from_yaml_file(path) for path in sorted(folder.glob("*.yaml"))}
    assert sorted(configs) == ["deepspeed_zero2", "fsdp2", "multi_gpu", "multi_node"]
    assert {name: config.distributed_type.value for name, config in configs.items()} == {
        "deepspeed_zero2": "DEEPSPEED",
        "fsdp2": "FSDP",
        "multi_gpu": "MULTI_GPU",
        "multi_node": "MULTI_GPU",
    }
    assert configs["multi_node"].num_machines == 2 and configs["multi_node"].num_processes == 16
    fsdp = configs["fsdp2"].fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",") == AVFMAEPreTrainedModel._no_split_modules
    assert configs["deepspeed_zero2"].deepspeed_config["zero_stage"] == 2


# --------------------------------------------------------------------------------------------------------------------
# 5. `datasets` inputs
# --------------------------------------------------------------------------------------------------------------------


def test_a_datasets_dataset_of_paths_becomes_checked_entries(tmp_path, processor_cropped_clip, processor_frame_folder,
                                                             processor_wav_file):  # fmt: skip
    import datasets

    features = datasets.Features(
        {"video": datasets.Value("string"), "audio": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["calm", "happy", "sad"])}
    )  # fmt: skip
    dataset = datasets.Dataset.from_dict(
        {"video": [processor_cropped_clip, processor_frame_folder], "audio": [None, processor_wav_file],
         "label": [2, 0]},
        features=features,
    )  # fmt: skip
    assert dataset_entries(dataset, num_labels=3, check_paths=True) == [
        ListEntry(processor_cropped_clip, None, 2),
        ListEntry(processor_frame_folder, processor_wav_file, 0),
    ]
    names = datasets.Dataset.from_dict({"video": [processor_cropped_clip, "missing.mp4"], "label": ["sad", "angry"]})
    with pytest.raises(ListFileError) as raised:
        dataset_entries(names, label2id={"calm": 0, "sad": 1}, check_paths=True, name="train")
    assert raised.value.problems == [
        "train[1]: label 'angry' is not a known class name; known names: calm, sad.",
    ]
    indices = datasets.Dataset.from_dict({"video": [processor_cropped_clip, "missing.mp4"], "label": [1, 5]})
    with pytest.raises(ListFileError) as raised:
        dataset_entries(indices, num_labels=3, check_paths=True, name="train")
    assert raised.value.problems == [
        "train[1]: label 5 is out of range for 3 classes (0-2).",
        "train[1]: video 'missing.mp4' does not exist.",
    ]
    with pytest.raises(ValueError, match="has no column 'clip'"):
        dataset_entries(names, video_column="clip")


def test_processed_dataset_decodes_rows_lazily_into_model_inputs(processor_cropped_clip):
    import datasets

    processor = AVFMAEProcessor.for_model_config(tiny_config())
    processor.video_processor.do_face_crop = False
    calls = []
    processor_call = AVFMAEProcessor.__call__

    def counting_call(self, *args, **kwargs):
        calls.append(1)
        return processor_call(self, *args, **kwargs)

    dataset = datasets.Dataset.from_dict({"video": [processor_cropped_clip] * 3, "label": [0, 2, 1]})
    processed = processed_dataset(dataset, processor)
    AVFMAEProcessor.__call__ = counting_call
    try:
        assert calls == []  # nothing decoded up front
        item = processed[1]
        assert len(calls) == 1
    finally:
        AVFMAEProcessor.__call__ = processor_call
    expected = processor(videos=processor_cropped_clip, sampling_mode="uniform", return_tensors="pt")
    assert torch.equal(item["pixel_values"], expected["pixel_values"][0])
    assert torch.equal(item["audio_values"], expected["audio_values"][0])
    assert item["labels"].item() == 2
    batch = AVFMAEDataCollator()([processed[0], processed[2]])
    assert batch["pixel_values"].shape[0] == 2 and batch["labels"].tolist() == [0, 1]


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_finetuning_reads_the_splits_of_a_saved_dataset(tmp_path, tiny_pretrained, processor_cropped_clip):
    import datasets

    clips = {"video": [processor_cropped_clip] * 2, "label": ["calm", "sad"]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(clips), "test": datasets.Dataset.from_dict(clips)}
    ).save_to_disk(tmp_path / "corpus")
    output_dir = tmp_path / "out"
    arguments = [
        "--model_name_or_path", os.fspath(tiny_pretrained), "--id2label", "calm,happy,sad",
        "--dataset_name", os.fspath(tmp_path / "corpus"), "--validation_split", "test", "--output_dir",
        os.fspath(output_dir), "--do_train", "--do_eval", "--max_steps", "1", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "2", "--save_strategy", "no", "--use_cpu", "--report_to", "none",
    ]  # fmt: skip
    results = load_script("run_finetuning").main(arguments)
    assert results["epoch"] == 1.0 and 0.0 <= results["eval_war"] <= 1.0
    with pytest.raises(ValueError, match="has no split 'dev'"):
        load_script("run_finetuning").main([*arguments, "--validation_split", "dev"])


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_finetuning_skips_an_unreadable_clip_and_stops_above_the_allowed_share(
    tmp_path, tiny_pretrained, processor_cropped_clip, corrupt_clip
):
    train = tmp_path / "train.txt"
    train.write_text(
        f"{processor_cropped_clip} 0\n{corrupt_clip} 1\n{processor_cropped_clip} 2\n{processor_cropped_clip} 1\n"
    )
    script = load_script("run_finetuning")
    kept = tmp_path / "kept"
    results = script.main(
        finetuning_arguments(tiny_pretrained, train, kept, "--max_steps", "2", "--max_bad_clip_share", "0.25")
    )
    assert results["train_bad_clips"] == 1
    assert [clip["clip"] for clip in json.loads((kept / "bad_clips.json").read_text())["bad_clips"]] == [
        os.fspath(corrupt_clip)
    ]
    stopped = tmp_path / "stopped"
    with pytest.raises(BadClipsError, match="1 of 4 clips could not be read") as raised:
        script.main(finetuning_arguments(tiny_pretrained, train, stopped, "--max_steps", "2", "--save_steps", "10",
                                         "--max_bad_clip_share", "0"))  # fmt: skip
    (checkpoint,) = stopped.glob("checkpoint-*")  # saved at the step that went over the limit, not at save_steps
    assert f"saved to {checkpoint}" in str(raised.value) and (checkpoint / "trainer_state.json").is_file()
    assert not (stopped / "model.safetensors").exists()
