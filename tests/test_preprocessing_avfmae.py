# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""`avfmae preprocess`: face-crop clips written once, resumed, sharded, and read by the training datasets."""

import json
import os
import shutil
import subprocess
import sys

import av
import datasets
import numpy as np
import pytest

from avfmae_hf import video_processing_avfmae
from avfmae_hf.cli import main
from avfmae_hf.data_avfmae import BadClipSkippingDataset
from avfmae_hf.preprocessing_avfmae import (
    MANIFEST_FILE,
    PreprocessingFormatError,
    preprocess_corpus,
    read_preprocessed_folder,
)
from avfmae_hf.processing_avfmae import AVFMAEProcessor
from avfmae_hf.training_avfmae import AVFMAEVideoDataset, read_list_file
from avfmae_hf.video_decoding_avfmae import load_audio_file

from .media import synthetic
from .test_training_scripts import TRAINING, script_environment
from .tiny_configs import tiny_config


FPS = 25.0
NUM_FRAMES = 20  # 0.8 s: enough for the face track, quick to detect


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two talking-face clips (labels 0 and 1), one without a face (label 2) and one corrupt file, in a JSONL list."""
    folder = tmp_path_factory.mktemp("preprocess_corpus")
    audio = synthetic.speech_like_audio(NUM_FRAMES / FPS, sampling_rate=44100)
    face, _ = synthetic.talking_face_frames(num_frames=NUM_FRAMES, height=240, width=320, face_size=100)
    synthetic.write_video(folder / "face_a.mp4", face, FPS, audio, 44100)
    synthetic.write_video(folder / "face_b.mp4", face[::-1].copy(), FPS, audio, 44100)
    no_face = synthetic.background(240, 320, kind=2)[None].repeat(NUM_FRAMES, axis=0)
    synthetic.write_video(folder / "no_face.mp4", no_face, FPS, audio, 44100)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    lines = [
        {"video": "face_a.mp4", "label": 0},
        {"video": "face_b.mp4", "label": 1},
        {"video": "no_face.mp4", "label": 2},
        {"video": "corrupt.mp4", "label": 0},
    ]
    list_file = folder / "train.jsonl"
    list_file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return list_file


@pytest.fixture(scope="module")
def processor():
    return AVFMAEProcessor()


@pytest.fixture(scope="module")
def preprocessed(corpus, processor, tmp_path_factory):
    output = tmp_path_factory.mktemp("preprocessed") / "out"
    report = preprocess_corpus(read_list_file(corpus), output, processor=processor, show_progress=False)
    return output, report


def _rows(folder):
    return datasets.load_dataset("json", data_files=str(folder / "table-*.jsonl"), split="train").to_list()


def test_rows_labels_and_skipped_corrupt_clip(preprocessed):
    output, report = preprocessed
    assert report.num_clips == 4 and report.num_written == 3 and report.num_reused == 0
    assert [source.rsplit("/", 1)[-1] for source, _ in report.skipped] == ["corrupt.mp4"]
    assert "CorruptVideoError" in report.skipped[0][1]
    rows = _rows(output)
    assert [row["source"].rsplit("/", 1)[-1] for row in rows] == ["face_a.mp4", "face_b.mp4", "no_face.mp4"]
    assert [row["label"] for row in rows] == [0, 1, 2]
    assert [row["face_found"] for row in rows] == [True, True, False]
    assert all(row["num_frames"] == NUM_FRAMES and row["fps"] == FPS for row in rows)
    manifest = json.loads((output / MANIFEST_FILE).read_text())
    assert manifest["format_version"] == 1
    assert manifest["settings"]["size"] == {"height": 160, "width": 160}
    assert manifest["shards"]["0-of-1"]["num_preprocessed"] == 3
    assert manifest["shards"]["0-of-1"]["num_skipped"] == 1


def test_clips_are_model_sized_crops_with_16khz_mono_audio(preprocessed):
    output, _ = preprocessed
    for row in _rows(output):
        with av.open(str(output / row["video"])) as container:
            video = container.streams.video[0]
            assert (video.codec_context.name, video.height, video.width) == ("h264", 160, 160)
            audio = container.streams.audio[0]
            assert (audio.codec_context.name, audio.rate, audio.channels) == ("flac", 16000, 1)
            frames = sum(1 for _ in container.decode(video=0))
        with av.open(str(output / row["video"])) as container:
            # FLAC frames of 4608 samples (the reader pays per frame): every one but the last is full
            sizes = [frame.samples for frame in container.decode(audio=0)]
        assert len(sizes) > 1 and set(sizes[:-1]) == {4608} and 0 < sizes[-1] <= 4608
        assert frames == NUM_FRAMES
        assert (output / row["video"]).stat().st_size < 0.3e6 * NUM_FRAMES / (3 * FPS)


def test_audio_is_stored_losslessly(preprocessed, corpus, processor):
    """The 16 kHz waveform read back from a clip is the processor's waveform of the source to 16-bit precision, so a
    preprocessed clip's spectrogram is its source's."""
    output, _ = preprocessed
    for row in _rows(output):
        expected = processor.feature_extractor.prepare_waveform(*load_audio_file(row["source"]))
        stored, sampling_rate = load_audio_file(output / row["video"])
        assert sampling_rate == 16000 and stored.shape == (1, expected.shape[0])
        assert np.abs(stored[0] - np.asarray(expected)).max() <= 0.5 / 2**15 + 1e-7


def test_unsampled_b_frames_can_be_skipped(preprocessed):
    """Clips are written so that reading 16 sampled frames need not decode the others: most B-frames are referenced by
    no other frame (FFmpeg's skip_frame="NONREF" drops them)."""
    output, _ = preprocessed
    with av.open(str(output / _rows(output)[0]["video"])) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        kept = sum(1 for _ in container.decode(stream))
    assert kept < NUM_FRAMES * 0.6


def test_resume_redoes_only_missing_clips_and_ignores_partial_files(preprocessed, corpus, processor, tmp_path):
    source, _ = preprocessed
    output = tmp_path / "out"
    shutil.copytree(source, output)
    rows = _rows(output)
    (output / rows[1]["video"]).unlink()
    # an interrupted run: a half-written clip under its temporary name, and a clip without its row
    (output / "clips" / "0123456789abcdef0123.mp4.partial").write_bytes(b"half written")
    (output / rows[2]["video"]).with_suffix(".json").unlink()
    report = preprocess_corpus(read_list_file(corpus), output, processor=processor, show_progress=False)
    assert report.num_written == 2 and report.num_reused == 1 and len(report.skipped) == 1
    assert _rows(output) == rows
    assert [entry.video for entry in read_preprocessed_folder(output)] == [str(output / row["video"]) for row in rows]


def test_two_shards_equal_one_run(preprocessed, corpus, processor, tmp_path):
    single, _ = preprocessed
    output = tmp_path / "sharded"
    entries = read_list_file(corpus)
    for shard_index in (0, 1):
        preprocess_corpus(
            entries, output, processor=processor, num_shards=2, shard_index=shard_index, show_progress=False
        )
    assert sorted(p.name for p in output.glob("table-*.jsonl")) == [
        "table-00000-of-00002.jsonl",
        "table-00001-of-00002.jsonl",
    ]
    key = lambda row: row["video"]  # noqa: E731
    assert sorted(_rows(output), key=key) == sorted(_rows(single), key=key)
    assert sorted(entry.label for entry in read_list_file(output)) == [0, 1, 2]


def test_another_format_version_is_an_error(preprocessed, corpus, processor, tmp_path):
    source, _ = preprocessed
    output = tmp_path / "old"
    shutil.copytree(source, output)
    manifest = json.loads((output / MANIFEST_FILE).read_text())
    manifest["format_version"] = 0
    (output / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(PreprocessingFormatError, match="format version 0"):
        read_list_file(output)
    with pytest.raises(PreprocessingFormatError, match="format version 0"):
        preprocess_corpus(read_list_file(corpus), output, processor=processor, show_progress=False)


def test_other_settings_into_the_same_folder_is_an_error(preprocessed, corpus, tmp_path):
    source, _ = preprocessed
    output = tmp_path / "other"
    shutil.copytree(source, output)
    other = AVFMAEProcessor()
    other.video_processor.face_crop_size = 224
    with pytest.raises(PreprocessingFormatError, match="settings"):
        preprocess_corpus(read_list_file(corpus), output, processor=other, show_progress=False)


def test_training_dataset_reads_the_folder_without_face_detection(preprocessed, processor, monkeypatch):
    output, _ = preprocessed

    def no_detection(*args, **kwargs):
        raise AssertionError("preprocessed clips must not be face-cropped again")

    monkeypatch.setattr(video_processing_avfmae, "crop_faces", no_detection)
    dataset = AVFMAEVideoDataset(output, processor, sampling_mode="train", seed=0)
    assert len(dataset) == 3
    item = dataset[1]
    assert tuple(item["pixel_values"].shape) == (16, 3, 160, 160)
    assert item["audio_values"].shape[0] == 1 and item["audio_values"].shape[-1] == 128
    assert int(item["labels"]) == 1
    # a bad clip of a run is named by its hashed file, its table row and the source it was made from
    name = BadClipSkippingDataset(dataset).clip_name(1)
    assert name.startswith(dataset.entries[1].video) and "table-00000-of-00001.jsonl:2, preprocessed from" in name
    assert name.endswith("face_b.mp4)")


def test_a_source_without_audio_is_written_with_a_warning(processor, tmp_path, caplog):
    face, _ = synthetic.talking_face_frames(num_frames=NUM_FRAMES, height=240, width=320, face_size=100)
    silent = synthetic.write_video(tmp_path / "silent.mp4", face, FPS)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{silent} 0\n")
    with caplog.at_level("WARNING"):
        preprocess_corpus(read_list_file(listing), tmp_path / "out", processor=processor, show_progress=False)
    assert f"{silent}: the video has no audio stream; its preprocessed clip has none either" in caplog.text


def test_cli_exit_codes(preprocessed, corpus, tmp_path, capsys):
    assert main(["preprocess", str(corpus), "--output-dir", str(tmp_path / "cli")]) == 0
    captured = capsys.readouterr()
    assert "preprocessed 3 of 4 clips" in captured.out
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "corrupt.mp4" in skipped[0]
    corrupt_only = tmp_path / "corrupt.jsonl"
    corrupt_only.write_text(json.dumps({"video": str(corpus.parent / "corrupt.mp4"), "label": 0}) + "\n")
    assert main(["preprocess", str(corrupt_only), "--output-dir", str(tmp_path / "none")]) == 1
    assert "corrupt.mp4" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path / "missing.txt"), "--output-dir", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.strip().startswith("error: ")
    # invalid options: status 2, a message naming the option
    for options, expected in [(["--num-shards", "0"], "--num-shards: must be 1 or more, got 0"),
                              (["--num-workers", "-3"], "--num-workers: must be 0 or more, got -3")]:  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(["preprocess", str(corpus), "--output-dir", str(tmp_path / "y"), *options])
        assert exit_info.value.code == 2 and expected in capsys.readouterr().err
    assert main(["preprocess", str(corpus), "--output-dir", str(tmp_path / "y"), "--shard-index", "1"]) == 2
    assert "--shard-index 1 must be below --num-shards 1" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


@pytest.mark.slow
def test_worker_processes_give_the_same_rows(preprocessed, corpus, processor, tmp_path):
    single, _ = preprocessed
    output = tmp_path / "workers"
    report = preprocess_corpus(read_list_file(corpus), output, processor=processor, num_workers=2, show_progress=False)
    assert report.num_written == 3 and len(report.skipped) == 1
    assert _rows(output) == _rows(single)


def test_cli_reads_a_saved_dataset(corpus, tmp_path, capsys):
    rows = [
        {"video": str(corpus.parent / name), "label": label} for name, label in (("face_a.mp4", 0), ("no_face.mp4", 1))
    ]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    output = tmp_path / "from_dataset"
    assert main(["preprocess", str(tmp_path / "saved"), "--output-dir", str(output)]) == 0
    assert "preprocessed 2 of 2 clips" in capsys.readouterr().out
    assert [row["label"] for row in _rows(output)] == [0, 1]


def test_cli_takes_a_saved_datasets_relative_paths_relative_to_its_folder(corpus, tmp_path, capsys, monkeypatch):
    saved = tmp_path / "saved"
    rows = [{"video": f"media/{name}", "label": label} for name, label in (("face_a.mp4", 0), ("no_face.mp4", 1))]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(saved))
    (saved / "media").mkdir()
    for name in ("face_a.mp4", "no_face.mp4"):
        shutil.copy(corpus.parent / name, saved / "media" / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nothing named media/ here: the paths must be read under the dataset's folder
    output = tmp_path / "relative"
    assert main(["preprocess", str(saved), "--output-dir", str(output)]) == 0
    assert "preprocessed 2 of 2 clips" in capsys.readouterr().out
    assert [os.path.realpath(row["source"]) for row in _rows(output)] == [
        os.path.realpath(saved / "media" / name) for name in ("face_a.mp4", "no_face.mp4")
    ]


def test_tables_of_another_shard_count_are_an_error(preprocessed, corpus, processor, tmp_path):
    source, _ = preprocessed
    output = tmp_path / "mixed"
    shutil.copytree(source, output)
    with pytest.raises(PreprocessingFormatError, match=r"\[1, 2\] shards"):
        preprocess_corpus(read_list_file(corpus), output, processor=processor, num_shards=2, show_progress=False)
    (output / "table-00001-of-00002.jsonl").write_text("")
    with pytest.raises(PreprocessingFormatError, match=r"\[1, 2\] shards"):
        read_list_file(output)


@pytest.mark.slow
def test_pretraining_script_trains_on_the_folder(preprocessed, tmp_path):
    output, _ = preprocessed
    config_dir = tmp_path / "config"
    tiny_config().save_pretrained(config_dir)
    completed = subprocess.run(
        [
            sys.executable, os.fspath(TRAINING / "run_pretraining.py"), "--config_name", os.fspath(config_dir),
            "--train_file", os.fspath(output), "--per_device_train_batch_size", "3", "--max_steps", "1",
            "--use_cpu", "--output_dir", os.fspath(tmp_path / "run"),
        ],
        env=script_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "train_results.json").read_text())["completed_steps"] == 1
