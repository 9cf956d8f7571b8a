# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The official training augmentations against the official fixtures (tests/fixtures/official/augment: every case
of its config.json) and against their rules written out by hand (random erasing, the RandAugment policy's draws,
the pretraining temporal start)."""

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avfmae_hf.augmentation_avfmae import (
    RANDAUGMENT_OPS,
    FineTuningAugmentation,
    MixParameters,
    MixupCutmix,
    PretrainingAugmentation,
    RandAugmentPolicy,
    apply_randaugment_op,
    cutmix_lambda,
    draw_cutmix_box,
    draw_erasing_box,
    draw_resized_crop_box,
    erase_box,
    horizontal_flip,
    mix_batch,
    multiscale_crop,
    multiscale_crop_offsets,
    multiscale_crop_sizes,
    pretraining_frame_indices,
    randaugment_level_args,
    random_erasing,
    resized_crop,
    soft_target_cross_entropy,
)


FIXTURES = Path(__file__).parent / "fixtures" / "official" / "augment"
CONFIG = json.loads((FIXTURES / "config.json").read_text())


def fixture(name: str) -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / f"{name}.safetensors")


# --------------------------------------------------------------------------------------------------------------------
# RandAugment
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONFIG["randaugment"]["cases"], ids=lambda case: case["key"])
def test_randaugment_op_reproduces_the_official_output_exactly(case):
    tensors = fixture("randaug_ops")
    frames = tensors["input"].numpy()
    outputs = apply_randaugment_op(frames, case["op_name"], case["level_args"], case["fillcolor"], case["resample"])
    np.testing.assert_array_equal(np.stack(outputs), tensors[case["key"]].numpy())


@pytest.mark.parametrize("case", CONFIG["randaugment"]["cases"], ids=lambda case: case["key"])
def test_randaugment_level_args_follow_the_magnitude(case):
    levels = [randaugment_level_args(case["op_name"], case["magnitude"], negate=negate) for negate in (False, True)]
    assert any(list(level) == pytest.approx(case["level_args"], abs=1e-12) for level in levels), levels


def test_policy_string_parses_into_the_official_policy():
    policy = CONFIG["randaugment"]["policy"]
    parsed = RandAugmentPolicy.from_string(policy["config_string"])
    assert list(RANDAUGMENT_OPS) == policy["ops_in_order"]
    assert parsed.num_layers == policy["num_layers"]
    assert parsed.magnitude == policy["magnitude"] and parsed.magnitude_std == policy["magnitude_std"]
    assert parsed.probability == policy["per_op_probability"]
    assert [0, parsed.magnitude_max] == policy["magnitude_clip"]
    assert parsed.resample == policy["hparams"]["interpolation"] and parsed.fillcolor == (128, 128, 128)


@pytest.mark.parametrize("config_string", ["rand-m7-n4-mstd0.5-inc0", "rand-m7-x4", "augmix-m5", "rand-m7-n4"])
def test_unsupported_policy_strings_are_refused(config_string):
    with pytest.raises(ValueError, match="RandAugment|increasing"):
        RandAugmentPolicy.from_string(config_string)


def test_unknown_op_and_wrong_arguments_are_refused():
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="Unknown RandAugment op 'Blur'"):
        apply_randaugment_op(frames, "Blur", [1.0])
    with pytest.raises(ValueError, match="takes 1 level argument"):
        apply_randaugment_op(frames, "Rotate", [])
    with pytest.raises(ValueError, match="uint8"):
        apply_randaugment_op(np.zeros((1, 8, 8, 3), np.float32), "Invert")


def test_randaugment_applies_the_same_parameters_to_every_frame():
    # two identical frames must come out identical whatever was drawn; a third, different frame shows that the
    # drawn ops did change something
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    policy = RandAugmentPolicy.from_string("rand-m7-n4-mstd0.5-inc1")
    changed = 0
    for seed in range(60):
        out = policy([image, image.copy(), image[::-1].copy()], np.random.default_rng(seed))
        np.testing.assert_array_equal(out[0], out[1])
        changed += not np.array_equal(out[0], image)
    assert changed > 40  # 1 - 0.5^4 of the clips get at least one op (most of which change the pixels)


def test_randaugment_draws_follow_the_policy_statistics():
    policy = RandAugmentPolicy.from_string("rand-m7-n4-mstd0.5-inc1")
    generator = np.random.default_rng(1234)
    clips = [policy.draw(generator) for _ in range(3000)]
    steps = [step for clip in clips for step in clip]
    assert all(len(clip) == 4 for clip in clips)
    # ops uniformly with replacement: each of the 15 ops close to 1/15 of the 12000 steps
    counts = Counter(step.op_name for step in steps)
    assert set(counts) == set(RANDAUGMENT_OPS)
    assert all(abs(count / len(steps) - 1 / 15) < 0.012 for count in counts.values())
    assert any(len({step.op_name for step in clip}) < 4 for clip in clips)  # repeats happen
    # each step runs with probability 0.5
    applied = [step for step in steps if step.applied]
    assert abs(len(applied) / len(steps) - 0.5) < 0.02
    # magnitude ~ N(7, 0.5) clipped to [0, 10]
    magnitudes = np.array([step.magnitude for step in applied])
    assert abs(magnitudes.mean() - 7.0) < 0.03 and abs(magnitudes.std() - 0.5) < 0.03
    assert magnitudes.min() >= 0 and magnitudes.max() <= 10
    # the sign: half negative among the signed ops; levels by hand (Rotate 3 degrees per magnitude step,
    # Posterize keeps 4 - int(0.4 m) bits)
    rotations = [step for step in applied if step.op_name == "Rotate"]
    assert all(abs(abs(step.level_args[0]) - 3 * step.magnitude) < 1e-9 for step in rotations)
    negative = sum(step.level_args[0] < 0 for step in rotations) / len(rotations)
    assert abs(negative - 0.5) < 0.08
    posterize = [step for step in applied if step.op_name == "PosterizeIncreasing"]
    assert all(step.level_args == (4 - int(0.4 * step.magnitude),) for step in posterize)
    assert all(step.level_args == () for step in applied if step.op_name in ("AutoContrast", "Equalize", "Invert"))


def test_randaugment_with_magnitude_zero_std_and_probability_one_is_deterministic():
    policy = RandAugmentPolicy.from_string("rand-m9-n2-mstd0-p1.0-inc1")
    steps = policy.draw(np.random.default_rng(0))
    assert policy.probability == 1.0 and all(step.applied and step.magnitude == 9.0 for step in steps)


# --------------------------------------------------------------------------------------------------------------------
# Random resized crop and flip
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONFIG["random_resized_crop_and_flip"]["cases"], ids=lambda case: case["key"])
def test_resized_crop_reproduces_the_official_output(case):
    tensors = fixture("resized_crop")
    output = resized_crop(tensors["input"], case["box_top_left_height_width"], (160, 160))
    torch.testing.assert_close(output, tensors[case["key"]], atol=1e-6, rtol=0)


def test_flip_reproduces_the_official_output():
    tensors = fixture("resized_crop")
    torch.testing.assert_close(horizontal_flip(tensors["input"]), tensors["flip"], atol=0, rtol=0)


def test_resized_crop_boxes_follow_the_scale_and_ratio_rule():
    generator = np.random.default_rng(0)
    for _ in range(500):
        top, left, height, width = draw_resized_crop_box(160, 160, generator)
        assert 0 <= top and top + height <= 160 and 0 <= left and left + width <= 160
        # rounding of the sides: allow one pixel on each side
        assert 0.08 * 160 * 160 * 0.85 <= height * width <= 160 * 160
        assert 0.75 * 0.9 <= width / height <= 4 / 3 * 1.1
    with pytest.raises(ValueError, match="does not fit"):
        resized_crop(torch.zeros(2, 3, 16, 16), (10, 0, 10, 4), (16, 16))


# --------------------------------------------------------------------------------------------------------------------
# Random erasing (no tensor fixture: its rule)
# --------------------------------------------------------------------------------------------------------------------


def test_random_erasing_uses_one_box_for_every_frame_with_fresh_noise():
    settings = CONFIG["random_erasing"]["settings"]
    assert settings["mode"] == "pixel" and settings["count"] == 1 and settings["cube"]
    erased_clips = 0
    for seed in range(200):
        clip = torch.full((4, 3, 40, 48), 7.0)
        out = random_erasing(clip, np.random.default_rng(seed), probability=settings["probability"])
        changed = out != 7.0
        if not changed.any():
            continue
        erased_clips += 1
        # the same pixels in every frame and channel, and they form one rectangle
        assert torch.equal(changed, changed[:1, :1].expand_as(changed))
        rows, columns = changed[0, 0].any(1).nonzero().flatten(), changed[0, 0].any(0).nonzero().flatten()
        height, width = len(rows), len(columns)
        assert changed[0, 0].sum() == height * width
        assert rows[-1] - rows[0] + 1 == height and columns[-1] - columns[0] + 1 == width
        assert height < 40 and width < 48
        assert 0.02 * 0.8 <= height * width / (40 * 48) <= 1 / 3 * 1.2
        # fresh noise: frames differ from each other
        box = out[:, :, changed[0, 0]]
        assert not torch.equal(box[0], box[1])
    assert abs(erased_clips / 200 - settings["probability"]) < 0.08


def test_erasing_noise_is_standard_normal_per_pixel_and_frame():
    clip = torch.zeros(8, 3, 64, 64)
    erase_box(clip, (0, 0, 64, 64), np.random.default_rng(0))
    assert abs(clip.mean().item()) < 0.02 and abs(clip.std().item() - 1.0) < 0.02
    correlation = torch.corrcoef(torch.stack([clip[0].flatten(), clip[1].flatten()]))[0, 1]
    assert abs(correlation.item()) < 0.05


def test_erasing_boxes_are_strictly_inside_the_frame():
    generator = np.random.default_rng(3)
    for _ in range(300):
        top, left, height, width = draw_erasing_box(20, 30, generator)
        assert height < 20 and width < 30 and top + height <= 20 and left + width <= 30


# --------------------------------------------------------------------------------------------------------------------
# Mixup / CutMix
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONFIG["mixup_cutmix"]["cases"], ids=lambda case: case["key"])
def test_mixup_cutmix_reproduces_the_official_output(case):
    tensors = fixture("mixup")
    settings = CONFIG["mixup_cutmix"]["settings"]
    mixer = MixupCutmix(
        num_classes=settings["num_classes"],
        mixup_alpha=settings["mixup_alpha"],
        cutmix_alpha=settings["cutmix_alpha"],
        switch_probability=settings["switch_prob"],
        label_smoothing=settings["label_smoothing"],
    )
    if case["use_cutmix"]:
        box = tuple(case["box_y0_y1_x0_x1"])
        assert cutmix_lambda(box, 16, 16) == pytest.approx(case["lam_corrected"], abs=1e-12)
        parameters = MixParameters(True, case["lam_corrected"], box)
    else:
        parameters = MixParameters(False, case["lam_drawn"])
    video, targets = mixer.apply(tensors["input"].clone(), tensors["target"], parameters)
    torch.testing.assert_close(video, tensors[f"{case['key']}_x"], atol=1e-6, rtol=0)
    torch.testing.assert_close(targets, tensors[f"{case['key']}_target"], atol=1e-6, rtol=0)


def test_mixup_needs_an_even_batch():
    mixer = MixupCutmix(num_classes=3)
    with pytest.raises(ValueError, match="even batch size, got 3"):
        mixer(torch.zeros(3, 2, 3, 8, 8), torch.tensor([0, 1, 2]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="even batch size"):
        mix_batch(torch.zeros(1, 2, 3, 8, 8), MixParameters(False, 0.5))


def test_mixing_draws_switch_between_mixup_and_cutmix():
    mixer = MixupCutmix(num_classes=2)
    generator = np.random.default_rng(0)
    draws = [mixer.draw(16, 16, generator) for _ in range(2000)]
    cutmix = [draw for draw in draws if draw.use_cutmix]
    assert abs(len(cutmix) / len(draws) - 0.5) < 0.04
    # Beta(0.8, 0.8) and Beta(1, 1) both have mean 0.5; cutmix's lam is the box-corrected one
    assert abs(np.mean([draw.lam for draw in draws if not draw.use_cutmix]) - 0.5) < 0.03
    for draw in cutmix:
        assert draw.lam == pytest.approx(cutmix_lambda(draw.box, 16, 16))
    # a box at the frame's corner is clipped
    y0, y1, x0, x1 = draw_cutmix_box(16, 16, 0.75, np.random.default_rng(5))
    assert 0 <= y0 <= y1 <= 16 and 0 <= x0 <= x1 <= 16 and y1 - y0 <= 8 and x1 - x0 <= 8


def test_soft_target_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[0.7, 0.3], [0.5, 0.5]])
    log_p = [
        [2 - math.log(math.e**2 + 1), -math.log(math.e**2 + 1)],
        [-math.log(1 + math.e), 1 - math.log(1 + math.e)],
    ]
    expected = -(0.7 * log_p[0][0] + 0.3 * log_p[0][1] + 0.5 * log_p[1][0] + 0.5 * log_p[1][1]) / 2
    assert soft_target_cross_entropy(logits, targets).item() == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------------------------------------------------
# Pretraining: multi-scale crop and temporal start
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_size", sorted(CONFIG["pretraining_multiscale_crop"]["candidates"]))
def test_multiscale_crop_candidates_and_offsets_for_every_listed_frame_size(frame_size):
    width, height = (int(value) for value in frame_size.split("x"))
    expected = CONFIG["pretraining_multiscale_crop"]["candidates"][frame_size]
    sizes = multiscale_crop_sizes(width, height, output_size=160)
    assert [list(size) for size in sizes] == expected["pairs_w_h"]
    assert len(expected["offsets_per_pair"]) == len(sizes)
    for (crop_width, crop_height), offsets in zip(sizes, expected["offsets_per_pair"].values(), strict=True):
        assert [list(offset) for offset in multiscale_crop_offsets(width, height, crop_width, crop_height)] == offsets
    assert list(expected["offsets_per_pair"]) == [f"{w}x{h}" for w, h in sizes]


@pytest.mark.parametrize("case", CONFIG["pretraining_multiscale_crop"]["examples"], ids=lambda case: case["key"])
def test_multiscale_crop_reproduces_the_official_output_exactly(case):
    tensors = fixture("multiscale_crop")
    output = multiscale_crop(tensors["input"].numpy(), case["crop_w_h_offset_x_y"], output_size=160)
    np.testing.assert_array_equal(np.stack(output), tensors[case["key"]].numpy())


def test_pretraining_augmentation_crops_every_frame_alike():
    frame = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    outputs = PretrainingAugmentation().transform_frames([frame, frame.copy()], (16, 16), np.random.default_rng(1))
    assert outputs[0].shape == (16, 16, 3)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_pretraining_temporal_start_rule():
    # 100 frames, window 64: the start is uniform in [0, 36] and the frames follow at the stride
    starts = set()
    generator = np.random.default_rng(0)
    for _ in range(2000):
        indices, start = pretraining_frame_indices(100, 16, 4, generator)
        assert indices.tolist() == [start + 4 * k for k in range(16)]
        starts.add(start)
    assert starts == set(range(37))
    # shorter than the window: from 0, the last frame repeated
    indices, start = pretraining_frame_indices(30, 16, 4, np.random.default_rng(0))
    assert start == 0 and indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [29] * 8
    assert pretraining_frame_indices(64, 16, 4, 0)[1] == 0


# --------------------------------------------------------------------------------------------------------------------
# The fine-tuning clip transforms
# --------------------------------------------------------------------------------------------------------------------


def test_fine_tuning_augmentation_switches():
    frame = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    off = FineTuningAugmentation(
        randaugment=None, random_resized_crop=False, flip_probability=0.0, erasing_probability=0.0
    )
    resized = off.transform_frames([frame], (16, 16), np.random.default_rng(0))
    assert resized[0].shape == (16, 16, 3)
    clip = torch.randn(2, 3, 16, 16)
    assert torch.equal(off.transform_clip(clip.clone(), np.random.default_rng(0)), clip)
    full = FineTuningAugmentation()
    outputs = [full.transform_clip(clip.clone(), np.random.default_rng(seed)) for seed in range(5)]
    assert all(output.shape == clip.shape for output in outputs)
    assert sum(not torch.equal(output, clip) for output in outputs) == 5
    with pytest.raises(ValueError, match="increasing"):
        FineTuningAugmentation(randaugment="rand-m7-n4-inc0")


def test_clip_grid_preview_writes_one_row_per_clip(tmp_path):
    from PIL import Image

    from avfmae_hf.augmentation_avfmae import save_clip_grid

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    black = torch.full((3, 3, 8, 10), (0.0 - 0.5) / 0.25)  # normalised 0
    red = black.clone()
    red[:, 0] = (1.0 - 0.5) / 0.25
    path = save_clip_grid([red, black], tmp_path / "grid.png", ["#0 label 1 happy", "#1"], mean, std, 12)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (2 * (12 + 8), 3 * 10, 3)
    assert (grid[12:20, :, 0] == 255).all() and (grid[12:20, :, 1:] == 0).all()
    assert (grid[32:40] == 0).all()
    assert (grid[:12] < 255).any(), "the caption is drawn"
    with pytest.raises(ValueError, match="No clips"):
        save_clip_grid([], tmp_path / "empty.png")


def test_augmentations_are_chosen_by_name():
    from avfmae_hf.augmentation_avfmae import FINE_TUNE_AUGMENTATIONS, PRETRAINING_AUGMENTATIONS

    full = FineTuningAugmentation.from_names(FINE_TUNE_AUGMENTATIONS)
    assert full.policy is not None and full.random_resized_crop
    assert (full.flip_probability, full.erasing_probability) == (0.5, 0.25)
    assert FineTuningAugmentation.from_names(["mixup_cutmix"]).is_identity
    pretraining = PretrainingAugmentation.from_names(["random_temporal_start"])
    assert pretraining.random_temporal_start and not pretraining.multiscale_crop
    assert set(PRETRAINING_AUGMENTATIONS) == {"multiscale_crop", "random_temporal_start", "audio_gain_jitter"}
    with pytest.raises(ValueError, match="Unknown augmentation\\(s\\) 'colour_jitter'; choose from randaugment"):
        FineTuningAugmentation.from_names(["randaugment", "colour_jitter"])
    with pytest.raises(ValueError, match="'flip'"):
        PretrainingAugmentation.from_names(["flip"])


def test_the_fine_tuning_order_is_the_official_one():
    from avfmae_hf.augmentation_avfmae import FINE_TUNE_TRAIN_ORDER

    # each step's name, and the words the official order uses for it (config.json: fine_tune_train_order)
    words = {
        "sample_frames": "frames sampled",
        "resize": "resize",
        "randaugment": "randaugment",
        "normalize": "normalise",
        "random_resized_crop": "random resized crop",
        "horizontal_flip": "horizontal flip",
        "random_erasing": "random erasing",
        "mixup_cutmix": "mixup",
    }
    official = CONFIG["fine_tune_train_order"]
    assert len(FINE_TUNE_TRAIN_ORDER) == len(official)
    for name, line in zip(FINE_TUNE_TRAIN_ORDER, official, strict=True):
        assert words[name] in line.lower(), (name, line)
