# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The official recipe inside training: the dataset's augmentation hook (order and draws), mixup in the Trainer, and
the fine-tuning script's recipe switches, evaluation protocol and task coverage on tiny models."""

import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainingArguments

from avfmae_hf import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEProcessor
from avfmae_hf.augmentation_avfmae import (
    FineTuningAugmentation,
    MixupCutmix,
    PretrainingAugmentation,
    soft_target_cross_entropy,
)
from avfmae_hf.training_avfmae import AVFMAEDataCollator, AVFMAETrainer, AVFMAEVideoDataset, ListEntry
from tests.media.synthetic import frame_index_of
from tests.test_training_scripts import load_script, restore_logging  # noqa: F401
from tests.tiny_configs import tiny_config


class RecordingAugmentation:
    """Records what each hook receives, in call order, and changes nothing."""

    def __init__(self):
        self.calls = []

    def sample_frames(self, total_frames, num_frames, frame_stride, generator=None):
        self.calls.append(("sample_frames", total_frames))
        return None

    def transform_frames(self, frames, size, generator=None):
        self.calls.append(("transform_frames", [(frame.dtype, frame.shape) for frame in frames], size))
        return frames

    def transform_clip(self, clip, generator=None):
        self.calls.append(("transform_clip", clip.dtype, tuple(clip.shape)))
        return clip


@pytest.fixture(scope="module")
def tiny_processor():
    processor = AVFMAEProcessor.for_model_config(tiny_config())
    processor.video_processor.do_face_crop = False
    return processor


def test_augmentation_hooks_run_in_the_official_order(tiny_processor, processor_frame_folder, processor_wav_file):
    recording = RecordingAugmentation()
    dataset = AVFMAEVideoDataset(
        [ListEntry(processor_frame_folder, processor_wav_file, 1)],
        tiny_processor,
        sampling_mode="train",
        seed=0,
        augmentation=recording,
    )
    item = dataset[0]
    names = [call[0] for call in recording.calls]
    assert names == ["sample_frames", "transform_frames", "transform_clip"]
    # uint8 frames before the resize and normalisation (the 160x160 folder frames), the normalised clip after
    assert recording.calls[1][1] == [(np.uint8, (160, 160, 3))] * 16 and recording.calls[1][2] == (16, 16)
    assert recording.calls[2][1:] == (torch.float32, (16, 3, 16, 16))
    assert item["pixel_values"].shape == (16, 3, 16, 16) and item["labels"] == 1
    with pytest.raises(ValueError, match="'test' sampling mode"):
        AVFMAEVideoDataset([ListEntry(processor_frame_folder, processor_wav_file, 1)], tiny_processor, "test", 0, None,
                           augmentation=recording)  # fmt: skip


def test_augmented_item_is_the_plain_item_transformed(tiny_processor, processor_frame_folder, processor_wav_file):
    entries = [ListEntry(processor_frame_folder, processor_wav_file, 0)]
    plain = AVFMAEVideoDataset(entries, tiny_processor, sampling_mode="train", seed=3)[0]
    flip_only = FineTuningAugmentation(
        randaugment=None, random_resized_crop=False, flip_probability=1.0, erasing_probability=0.0
    )
    flipped = AVFMAEVideoDataset(entries, tiny_processor, sampling_mode="train", seed=3, augmentation=flip_only)[0]
    # the same window and audio (the window is the first draw of the item's generator), the frames mirrored
    torch.testing.assert_close(flipped["pixel_values"], plain["pixel_values"].flip(-1), atol=0, rtol=0)
    torch.testing.assert_close(flipped["audio_values"], plain["audio_values"], atol=0, rtol=0)
    # the full recipe changes the clip, and is a function of (seed, epoch, index)
    full = AVFMAEVideoDataset(
        entries, tiny_processor, sampling_mode="train", seed=3, augmentation=FineTuningAugmentation()
    )
    first, again = full[0], full[0]
    torch.testing.assert_close(first["pixel_values"], again["pixel_values"], atol=0, rtol=0)
    full.set_epoch(1)
    assert not torch.equal(full[0]["pixel_values"], first["pixel_values"])


def test_pretraining_dataset_takes_frames_from_a_random_start_at_the_stride(processor_index_clips):
    from avfmae_hf.training_avfmae import AVFMAEPretrainingDataset

    processor = AVFMAEProcessor()
    processor.video_processor.do_face_crop = False
    mean = torch.tensor(processor.video_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.video_processor.image_std).view(1, 3, 1, 1)
    dataset = AVFMAEPretrainingDataset(
        [ListEntry(processor_index_clips["25fps"])],
        processor,
        seed=0,
        augmentation=PretrainingAugmentation(multiscale_crop=False),
    )
    starts = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        pixels = ((dataset[0]["pixel_values"] * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        indices = [frame_index_of(frame.permute(1, 2, 0).numpy()) for frame in pixels]
        start = indices[0]
        assert indices == [start + 4 * k for k in range(16)] and 0 <= start <= 100 - 64
        starts.add(start)
    assert len(starts) > 1


def test_trainer_mixes_training_batches_only(tmp_path):
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tiny_config(num_labels=3))
    mixup = MixupCutmix(num_classes=3)
    args = TrainingArguments(output_dir=os.fspath(tmp_path), use_cpu=True, report_to="none", seed=5)
    trainer = AVFMAETrainer(model=model, args=args, mixup=mixup, data_collator=AVFMAEDataCollator())
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "pixel_values": torch.randn(4, 16, 3, 16, 16, generator=generator),
        "audio_values": torch.randn(4, 1, 32, 16, generator=generator),
        "labels": torch.tensor([0, 1, 2, 1]),
    }
    model.train()
    loss = trainer.compute_loss(model, dict(inputs))
    # by hand: the first draw of step 0 (seed 5, process 0, step 0, micro-batch 0)
    rng = np.random.default_rng(np.random.SeedSequence([5, 0, 0, 0]))
    mixed, targets = mixup(inputs["pixel_values"].clone(), inputs["labels"], rng)
    expected = soft_target_cross_entropy(
        model(pixel_values=mixed, audio_values=inputs["audio_values"]).logits, targets
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not torch.equal(mixed, inputs["pixel_values"])
    model.eval()
    plain = trainer.compute_loss(model, dict(inputs))
    assert plain.item() == pytest.approx(model(**inputs).loss.item(), rel=1e-6)
    # the training loader drops an odd last batch (it could not be mixed), evaluation keeps every clip
    three = [{key: value[i] for key, value in inputs.items()} for i in range(3)]
    args = TrainingArguments(
        output_dir=os.fspath(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
    )  # fmt: skip
    loaders = AVFMAETrainer(model=model, args=args, mixup=mixup, train_dataset=three, eval_dataset=three,
                            data_collator=AVFMAEDataCollator())  # fmt: skip
    assert len(loaders.get_train_dataloader()) == 1 and len(loaders.get_eval_dataloader()) == 2
    assert not args.dataloader_drop_last
    with pytest.raises(ValueError, match="label_smoothing_factor"):
        AVFMAETrainer(
            model=model,
            args=TrainingArguments(output_dir=os.fspath(tmp_path), use_cpu=True, label_smoothing_factor=0.1),
            mixup=mixup,
        )


# --------------------------------------------------------------------------------------------------------------------
# The fine-tuning script
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_recipe_pretrained")
    config = tiny_config()
    AVFMAEForPreTraining(config).save_pretrained(folder)
    processor = AVFMAEProcessor.for_model_config(config)
    processor.video_processor.do_face_crop = False
    processor.save_pretrained(folder)
    return folder


def lists(tmp_path, clip, folder, wav, labels=("0", "1", "1", "0")):
    train = tmp_path / "train.txt"
    train.write_text(
        "".join(f"{folder} {wav} {label}\n" if i % 2 else f"{clip} {label}\n" for i, label in enumerate(labels))
    )
    validation, test = tmp_path / "validation.txt", tmp_path / "test.txt"
    validation.write_text(train.read_text())
    test.write_text(train.read_text())
    return train, validation, test


def base_arguments(model, output_dir, *extra):
    return [
        "--model_name_or_path", os.fspath(model), "--output_dir", os.fspath(output_dir), "--max_steps", "1",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--learning_rate", "1e-4",
        "--use_cpu", "--report_to", "none", "--save_strategy", "no", *extra,
    ]  # fmt: skip


@pytest.mark.usefixtures("restore_logging")
def test_bad_recipe_input_fails_before_training(
    tmp_path, tiny_pretrained, processor_cropped_clip, processor_frame_folder, processor_wav_file
):
    train, validation, test = lists(tmp_path, processor_cropped_clip, processor_frame_folder, processor_wav_file)
    script = load_script("run_finetuning")
    common = ["--id2label", "calm,happy", "--train_file", os.fspath(train), "--do_train"]
    with pytest.raises(ValueError, match="even batch size"):
        script.main(base_arguments(tiny_pretrained, tmp_path / "a", *common, "--per_device_train_batch_size", "3"))
    with pytest.raises(ValueError, match="same list"):
        script.main(
            base_arguments(
                tiny_pretrained,
                tmp_path / "b",
                *common,
                "--validation_file",
                os.fspath(test),
                "--test_file",
                os.fspath(test),
            )  # fmt: skip
        )
    with pytest.raises(ValueError, match="Unknown RandAugment setting"):
        script.main(base_arguments(tiny_pretrained, tmp_path / "c", *common, "--randaugment_policy", "rand-q3-inc1"))
    assert not (tmp_path / "a" / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_recipe_preview_and_selection_on_the_test_split_warns(
    tmp_path, tiny_pretrained, processor_cropped_clip, processor_frame_folder, processor_wav_file,
    caplog,
):  # fmt: skip
    train, validation, test = lists(tmp_path, processor_cropped_clip, processor_frame_folder, processor_wav_file)
    script = load_script("run_finetuning")
    output_dir = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        results = script.main(
            base_arguments(
                tiny_pretrained,
                output_dir,
                "--id2label",
                "calm,happy",
                "--train_file",
                os.fspath(train),
                "--test_file",
                os.fspath(test),
                "--model_selection_split",
                "test",
                "--do_train",
                "--do_eval",
                "--save_augmentation_preview",
                "3",
                "--label_smoothing_factor",
                "0.1",
            )  # fmt: skip
        )
    assert "Selecting checkpoints on the test split" in caplog.text
    assert {"eval_war", "test_war"} <= set(results)
    grid = np.asarray(Image.open(output_dir / "augmentation_preview.png"))
    assert grid.shape[0] == 3 * (14 + 16) and grid.shape[1] == 16 * 16  # 3 clips of 16 frames of 16x16


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_video_only_multi_label_and_regression_runs(
    tmp_path, tiny_pretrained, processor_cropped_clip, processor_frame_folder, processor_wav_file
):
    script = load_script("run_finetuning")
    # video-only from the audio-visual checkpoint
    train, validation, _ = lists(tmp_path, processor_cropped_clip, processor_frame_folder, processor_wav_file)
    out = tmp_path / "video_only"
    results = script.main(
        base_arguments(tiny_pretrained, out, "--id2label", "calm,happy", "--train_file", os.fspath(train),
                       "--validation_file", os.fspath(validation), "--video_only", "--do_train", "--do_eval")
    )  # fmt: skip
    model = AVFMAEForVideoClassification.from_pretrained(out)
    assert not model.config.use_audio and "eval_uar" in results
    assert not any("audio" in name for name, _ in model.named_parameters())
    # multi-label: every label of a video on its line
    multi = tmp_path / "multi.txt"
    multi.write_text(
        f"{processor_frame_folder} {processor_wav_file} 0 2\n{processor_frame_folder} {processor_wav_file} 1\n" * 2
    )
    results = script.main(
        base_arguments(tiny_pretrained, tmp_path / "multi", "--id2label", "a,b,c", "--train_file", os.fspath(multi),
                       "--validation_file", os.fspath(multi),
                       "--problem_type", "multi_label_classification", "--do_train", "--do_eval")
    )  # fmt: skip
    assert {"eval_micro_f1", "eval_macro_f1", "eval_subset_accuracy"} <= set(results)
    # regression, three targets (Werewolf-XL style)
    regression = tmp_path / "regression.txt"
    regression.write_text(
        f"{processor_frame_folder} {processor_wav_file} 0.1 0.5 -0.2\n"
        f"{processor_frame_folder} {processor_wav_file} 0.7 -0.3 0.4\n" * 2
    )
    results = script.main(
        base_arguments(tiny_pretrained, tmp_path / "regression", "--id2label", "arousal,valence,dominance",
                       "--train_file", os.fspath(regression), "--validation_file", os.fspath(regression),
                       "--problem_type", "regression", "--do_train", "--do_eval")
    )  # fmt: skip
    for name in ("ccc", "pcc", "mse", "ccc_2", "pcc_0", "mse_1"):
        assert np.isfinite(results[f"eval_{name}"]), name
    assert json.loads((tmp_path / "regression" / "config.json").read_text())["problem_type"] == "regression"


def textured_clip(root, name: str, bright: bool, seed: int, num_frames: int = 20, size: int = 32) -> str:
    """Frames of random texture around a dark (about 50) or a bright (about 205) level, in random colours."""
    from tests.media import synthetic

    rng = np.random.default_rng(seed)
    level = (205 if bright else 50) + rng.integers(-20, 21, 3)
    frames = level + rng.normal(0, 20, (num_frames, size, size, 3))
    return synthetic.write_frame_folder(root / name, frames.clip(0, 255).astype(np.uint8))


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_a_tiny_model_learns_with_the_full_recipe_on(tmp_path):
    # two classes (dark / bright textured clips), the official augmentations and mixup all on: RandAugment's
    # colour ops, crops, flips, erasing and mixing blur the classes, and the validation UAR must still end clearly
    # above chance (0.5)
    lines = {"train": [], "validation": []}
    for split, count, offset in (("train", 16, 0), ("validation", 12, 1000)):
        for i in range(count):
            bright = i % 2 == 1
            folder = textured_clip(tmp_path / split, f"clip{i}", bright, seed=offset + i)
            lines[split].append(f"{folder} {int(bright)}\n")
    for split, content in lines.items():
        (tmp_path / f"{split}.txt").write_text("".join(content))
    config_dir = tmp_path / "config"
    tiny_config(use_audio=False, num_labels=2).save_pretrained(config_dir)
    script = load_script("run_finetuning")
    results = script.main(
        [
            "--config_name", os.fspath(config_dir), "--id2label", "dark,bright",
            "--train_file", os.fspath(tmp_path / "train.txt"), "--validation_file", os.fspath(tmp_path / "validation.txt"),
            "--output_dir", os.fspath(tmp_path / "out"), "--do_train", "--do_eval", "--max_steps", "40",
            "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "12", "--learning_rate", "3e-3",
            "--layer_decay", "1.0", "--warmup_steps", "5", "--label_smoothing_factor", "0.1", "--use_cpu",
            "--report_to", "none", "--save_strategy", "no", "--logging_steps", "10", "--seed", "0",
        ]
    )  # fmt: skip
    assert results["eval_uar"] >= 0.75, results


@pytest.mark.slow
@pytest.mark.usefixtures("restore_logging")
def test_the_test_split_is_scored_on_softmax_averaged_segments(
    tmp_path, tiny_pretrained, processor_cropped_clip, processor_frame_folder, processor_wav_file
):
    train, _, test = lists(tmp_path, processor_cropped_clip, processor_frame_folder, processor_wav_file)
    test.write_text(f"{processor_cropped_clip} 1\n{processor_frame_folder} {processor_wav_file} 0\n")
    output_dir = tmp_path / "out"
    script = load_script("run_finetuning")
    results = script.main(
        base_arguments(tiny_pretrained, output_dir, "--id2label", "calm,happy", "--train_file", os.fspath(train),
                       "--test_file", os.fspath(test), "--do_train", "--num_test_segments", "2")
    )  # fmt: skip
    # by hand: each video's 2 official test segments, softmax, mean over the segments, cross-entropy of the mean
    model = AVFMAEForVideoClassification.from_pretrained(output_dir).eval()
    processor = AVFMAEProcessor.from_pretrained(output_dir)
    probabilities = []
    for video, audio in ((processor_cropped_clip, None), (processor_frame_folder, processor_wav_file)):
        views = [processor(videos=video, audio=audio, sampling_mode="test", test_segment=k, return_tensors="pt")
                 for k in (0, 1)]  # fmt: skip
        with torch.no_grad():
            logits = [model(pixel_values=v["pixel_values"], audio_values=v["audio_values"]).logits[0] for v in views]
        probabilities.append((logits[0].softmax(-1) + logits[1].softmax(-1)) / 2)
    labels = [1, 0]
    loss = -sum(float(p[label].log()) for p, label in zip(probabilities, labels, strict=True)) / 2
    accuracy = sum(int(p.argmax()) == label for p, label in zip(probabilities, labels, strict=True)) / 2
    assert results["test_loss"] == pytest.approx(loss, rel=1e-4)
    assert results["test_war"] == pytest.approx(accuracy)
