# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Training helpers: list files, datasets and collator, the official optimizer groups, metrics, multi-view
evaluation and the resume bookkeeping."""

import configparser
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import EvalPrediction, HfArgumentParser, TrainingArguments

from avfmae_hf import AVFMAEForPreTraining, AVFMAEForVideoClassification, AVFMAEProcessor
from avfmae_hf.convert_avfmae import map_original_key
from avfmae_hf.training_avfmae import (
    METRICS_DIR,
    AVFMAEDataCollator,
    AVFMAEPretrainingDataset,
    AVFMAETrainer,
    AVFMAEVideoDataset,
    DatasetEpochCallback,
    ListEntry,
    TrainingProgress,
    build_compute_metrics,
    combine_view_logits,
    layer_decay_parameter_groups,
    layer_id,
    load_metric,
    mask_generator,
    parameter_settings,
    parse_arguments,
    read_list_file,
    scale_learning_rate,
)
from tests.tiny_configs import tiny_config


OFFICIAL = Path(__file__).parent / "fixtures" / "official"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_processor():
    processor = AVFMAEProcessor.for_model_config(tiny_config())
    processor.video_processor.do_face_crop = False
    return processor


# --------------------------------------------------------------------------------------------------------------------
# List files
# --------------------------------------------------------------------------------------------------------------------


def test_read_list_file_reads_the_official_formats(tmp_path):
    (tmp_path / "train.csv").write_text(
        "clips/a_frames clips/a.wav 3\n/abs/b_frames /abs/b.wav 0\n\n# comment\nvideos/c.mp4 2\nvideos/d.mp4\n"
    )
    entries = read_list_file(tmp_path / "train.csv")
    assert entries == [
        ListEntry(str(tmp_path / "clips/a_frames"), str(tmp_path / "clips/a.wav"), 3),
        ListEntry("/abs/b_frames", "/abs/b.wav", 0),
        ListEntry(str(tmp_path / "videos/c.mp4"), None, 2),
        ListEntry(str(tmp_path / "videos/d.mp4"), None, None),
    ]
    (tmp_path / "regression.txt").write_text("f1 a1.wav 0.5 -0.25\n")
    assert read_list_file(tmp_path / "regression.txt", problem_type="regression", root="/data") == [
        ListEntry("/data/f1", "/data/a1.wav", (0.5, -0.25))
    ]


def test_read_list_file_reads_csv_with_label_names(tmp_path):
    (tmp_path / "list.csv").write_text("video,label\nmy clip.mp4,happy\nother.mp4,1\n")
    entries = read_list_file(tmp_path / "list.csv", label2id={"sad": 0, "happy": 1})
    assert entries == [
        ListEntry(str(tmp_path / "my clip.mp4"), None, 1),
        ListEntry(str(tmp_path / "other.mp4"), None, 1),
    ]
    (tmp_path / "audio.csv").write_text("video,audio,label\nframes,speech.wav,0\n")
    assert read_list_file(tmp_path / "audio.csv") == [
        ListEntry(str(tmp_path / "frames"), str(tmp_path / "speech.wav"), 0)
    ]


def test_read_list_file_rejects_unknown_labels_and_bad_lines(tmp_path):
    (tmp_path / "names.txt").write_text("a.mp4 angry\n")
    with pytest.raises(ValueError, match="names.txt:1: label 'angry'.*pass id2label"):
        read_list_file(tmp_path / "names.txt")
    with pytest.raises(ValueError, match="known names: sad"):
        read_list_file(tmp_path / "names.txt", label2id={"sad": 0})
    (tmp_path / "spaces.txt").write_text("my clip.mp4 audio.wav 1\n")
    with pytest.raises(ValueError, match="4 fields.*use a CSV file"):
        read_list_file(tmp_path / "spaces.txt")
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="lists no videos"):
        read_list_file(tmp_path / "empty.txt")


# --------------------------------------------------------------------------------------------------------------------
# Datasets and collator
# --------------------------------------------------------------------------------------------------------------------


def test_dataset_items_and_collated_batch_have_model_shapes(
    tiny_processor, processor_cropped_clip, processor_frame_folder, processor_wav_file
):
    entries = [ListEntry(processor_frame_folder, processor_wav_file, 1), ListEntry(processor_cropped_clip, None, 4)]
    dataset = AVFMAEVideoDataset(entries, tiny_processor, sampling_mode="train", seed=0)
    items = [dataset[0], dataset[1]]
    for item in items:
        assert item["pixel_values"].shape == (16, 3, 16, 16)
        assert item["audio_values"].shape == (1, 32, 16)
        assert item["labels"].dtype == torch.long and item["labels"].ndim == 0
    batch = AVFMAEDataCollator()(items)
    assert batch["pixel_values"].shape == (2, 16, 3, 16, 16)
    assert batch["audio_values"].shape == (2, 1, 32, 16)
    assert batch["labels"].tolist() == [1, 4]
    model = AVFMAEForVideoClassification(tiny_config()).eval()
    assert model(**batch).loss.isfinite()


def test_dataset_messages_name_the_clip_by_its_index(tiny_processor, processor_cropped_clip, tmp_path):
    missing = tmp_path / "missing.mp4"
    dataset = AVFMAEVideoDataset([ListEntry(processor_cropped_clip, None, 0), ListEntry(str(missing), None, 0)],
                                 tiny_processor, "uniform")  # fmt: skip
    with pytest.raises(ValueError, match=rf"^item 1 \('{missing}'\)"):
        dataset[1]


def test_seeded_dataset_is_a_function_of_seed_epoch_and_index(tiny_processor, processor_cropped_clip):
    dataset = AVFMAEVideoDataset([ListEntry(processor_cropped_clip, None, 0)] * 2, tiny_processor, "train", seed=3)
    first = dataset[0]
    assert torch.equal(first["pixel_values"], dataset[0]["pixel_values"])
    assert torch.equal(first["audio_values"], dataset[0]["audio_values"])
    draws = {dataset.random_state(0).randint(1 << 30) for dataset.epoch in range(3)} | {
        dataset.random_state(1).randint(1 << 30)
    }
    assert len(draws) == 4, "epochs and items draw differently"
    dataset.set_epoch(0)
    assert dataset.random_state(0).randint(1 << 30) == AVFMAEVideoDataset(
        [ListEntry(processor_cropped_clip, None, 0)], tiny_processor, "train", seed=3
    ).random_state(0).randint(1 << 30)


def test_test_mode_stacks_the_segments_as_views(tiny_processor, processor_cropped_clip):
    entry = ListEntry(processor_cropped_clip, None, 2)
    dataset = AVFMAEVideoDataset([entry], tiny_processor, sampling_mode="test")
    item = dataset[0]
    assert item["pixel_values"].shape == (2, 16, 3, 16, 16)
    assert item["audio_values"].shape == (2, 1, 32, 16)
    single = AVFMAEVideoDataset([entry], tiny_processor, sampling_mode="test", test_segments=[1])[0]
    assert torch.equal(single["pixel_values"], item["pixel_values"][1])
    assert AVFMAEDataCollator()([item, item])["pixel_values"].shape == (2, 2, 16, 3, 16, 16)


def test_pretraining_dataset_has_no_labels_and_regression_labels_are_float(tiny_processor, processor_cropped_clip):
    pretraining = AVFMAEPretrainingDataset([ListEntry(processor_cropped_clip, None, 0)], tiny_processor, seed=0)
    item = pretraining[0]
    assert sorted(item) == ["audio_values", "pixel_values"]
    assert pretraining.sampling_mode == "train" and pretraining.audio_gain_jitter
    batch = AVFMAEDataCollator()([item, item])
    assert "labels" not in batch
    outputs = AVFMAEForPreTraining(tiny_config())(**batch, generator=mask_generator(0, 0))
    assert outputs.loss.isfinite()

    regression = AVFMAEVideoDataset(
        [ListEntry(processor_cropped_clip, None, (0.5, -1.0))],
        tiny_processor,
        problem_type="regression",
        use_audio=False,
    )
    item = regression[0]
    assert sorted(item) == ["labels", "pixel_values"]
    assert item["labels"].dtype == torch.float32 and item["labels"].tolist() == [0.5, -1.0]
    with pytest.raises(ValueError, match="1 entries have no label"):
        AVFMAEVideoDataset([ListEntry(processor_cropped_clip)], tiny_processor)


def test_collator_renames_label_and_converts_arrays():
    features = [
        {"pixel_values": np.zeros((2, 3)), "label": 1, "video": "a"},
        {"pixel_values": np.ones((2, 3)), "label": 0},
    ]
    batch = AVFMAEDataCollator()(features)
    assert sorted(batch) == ["labels", "pixel_values"]
    assert batch["pixel_values"].shape == (2, 2, 3) and batch["labels"].tolist() == [1, 0]


def _collate_and_report_sharing(features):
    batch = AVFMAEDataCollator()(features)
    return batch, {name: value.is_shared() for name, value in batch.items()}


def test_collator_stacks_into_shared_memory_inside_a_worker():
    """Inside a DataLoader worker the batch is built in shared memory, so it is not copied again on its way to the
    main process; outside one it is an ordinary tensor."""
    items = [
        {"pixel_values": torch.full((2, 3), float(i)), "audio_values": torch.zeros(1, 4), "labels": i}
        for i in range(4)
    ]
    loader = torch.utils.data.DataLoader(items, batch_size=2, num_workers=1, collate_fn=_collate_and_report_sharing)
    batches = list(loader)
    assert all(sharing == {"pixel_values": True, "audio_values": True, "labels": True} for _, sharing in batches)
    last = batches[-1][0]
    assert last["pixel_values"][:, 0, 0].tolist() == [2.0, 3.0] and last["labels"].tolist() == [2, 3]
    _, sharing = _collate_and_report_sharing(items[:2])
    assert not any(sharing.values())


class _SharingOfItems(torch.utils.data.Dataset):
    """Reports, from inside a worker, whether a dataset item and a plain processor call are in shared memory and
    whether the allocator setting for items applied."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        from avfmae_hf.video_processing_avfmae import reuse_freed_memory

        cache_before = reuse_freed_memory.cache_info().currsize
        item = self.dataset[index]
        applied = reuse_freed_memory.cache_info().currsize == 1 and reuse_freed_memory()
        direct = self.dataset.processor(videos=self.dataset.entries[index].video, return_tensors="pt")
        return {
            "item_shared": torch.tensor([item[name].is_shared() for name in ("pixel_values", "audio_values")]),
            "direct_shared": torch.tensor(direct["pixel_values"].is_shared() and direct["audio_values"].is_shared()),
            "allocator": torch.tensor([cache_before == 0, applied]),
            "pixel_values": item["pixel_values"],
        }


def test_dataset_items_stay_in_worker_memory_and_the_batch_goes_to_shared_memory(
    tiny_processor, processor_cropped_clip
):
    """A dataset item is copied into the collated batch (in shared memory), so in a worker it is made in ordinary,
    reusable memory (a shared-memory item would fault in every page only to be copied); a processor called directly
    in a worker still returns shared-memory outputs. The item's values are those made outside a worker."""
    dataset = AVFMAEVideoDataset([ListEntry(processor_cropped_clip, None, 0)] * 2, tiny_processor)
    loader = torch.utils.data.DataLoader(_SharingOfItems(dataset), batch_size=None, num_workers=1, timeout=120)
    reports = list(loader)
    assert [report["item_shared"].tolist() for report in reports] == [[False, False]] * 2
    assert all(bool(report["direct_shared"]) for report in reports)
    first, second = (report["allocator"].tolist() for report in reports)
    # applied once per worker process, on glibc (the Linux test machines)
    assert first == [True, True] and second == [False, True]
    torch.testing.assert_close(reports[0]["pixel_values"], dataset[0]["pixel_values"], rtol=0, atol=0)
    batch = next(
        iter(torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=_collate_and_report_sharing))
    )
    assert batch[1] == {"pixel_values": True, "audio_values": True, "labels": True}


# --------------------------------------------------------------------------------------------------------------------
# Optimizer groups (architecture.md §10.2)
# --------------------------------------------------------------------------------------------------------------------


def test_layer_decay_scales_follow_the_official_exponents():
    # L = 2 encoder layers per tower, F = 2 fusion layers: ids 0 .. L + F + 1 = 5, scale 0.75 ** (5 - id)
    model = AVFMAEForVideoClassification(tiny_config())
    settings = parameter_settings(model, layer_decay=0.75)
    expected = {
        "avfmae.video_embeddings.projection.weight": 5,  # 0.75 ** (L + 3)
        "avfmae.audio_embeddings.projection.bias": 5,
        "avfmae.video_encoder.layers.0.local_attention.q_proj.weight": 4,  # layer k: 0.75 ** (L + 2 - k)
        "avfmae.audio_encoder.layers.0.mlp.fc1.weight": 4,
        "avfmae.video_encoder.layers.1.mlp_norm.weight": 3,
        "avfmae.audio_encoder.layers.1.region_attention.o_proj.bias": 3,
        "avfmae.fusion.layers.0.video_branch.self_attention.q_proj.weight": 2,  # fusion k: 0.75 ** (F - k)
        "avfmae.fusion.layers.1.audio_branch.cross_gate.weight": 1,
        "avfmae.video_encoder.region_tokens": 0,  # everything else: scale 1
        "avfmae.audio_encoder.layernorm.weight": 0,
        "avfmae.fusion.overall_projection.weight": 0,
        "avfmae.fusion.refinement.video_projection.conv.weight": 0,
        "avfmae.fusion.video_aggregation.stage_gate.weight": 0,
        "avfmae.video_layer_weights": 0,
        "fc_norm.weight": 0,
        "classifier.weight": 0,
    }
    for name, exponent in expected.items():
        assert settings[name].lr_scale == pytest.approx(0.75**exponent), name
        assert settings[name].layer_id == 5 - exponent, name
    assert len(settings) == len(list(model.parameters()))


def test_layer_decay_uses_the_deeper_tower_and_the_fusion_depth():
    model = AVFMAEForVideoClassification(
        tiny_config(video_config={"num_hidden_layers": 3}, fusion_num_hidden_layers=1)
    )
    settings = parameter_settings(model, layer_decay=0.5)
    # L = 3, F = 1: top id 5
    assert settings["avfmae.video_embeddings.projection.weight"].lr_scale == 0.5**5
    assert settings["avfmae.video_encoder.layers.2.mlp.fc2.weight"].lr_scale == 0.5**2
    assert settings["avfmae.audio_encoder.layers.1.mlp.fc2.weight"].lr_scale == 0.5**3
    assert settings["avfmae.fusion.layers.0.video_branch.output_norm.weight"].lr_scale == 0.5**1
    assert settings["classifier.bias"].lr_scale == 1.0


def official_layer_id(key: str, num_layers: int, num_fusion_layers: int) -> int:
    """The official `get_num_layer_for_avit` (optim_factory.py @ 7246ea2), restated on official key names."""
    top = num_layers + num_fusion_layers + 1
    if any(name in key for name in ("cls_token", "mask_token", "pos_embed", "patch_embed")):
        return 0
    if "blocks" in key:
        index = key.find("blocks")
        layer = int(key[index:].split(".")[1])
        return layer + (num_layers if "fusion" in key else 0) + 1
    return top


def test_layer_ids_match_the_official_rule_on_every_official_key():
    description = json.loads((OFFICIAL / "tiny_finetune" / "config.json").read_text())["constructor_kwargs"]
    num_layers = max(description["depth"], description["depth_audio"])
    num_fusion_layers = description["fusion_depth"]
    with safe_open(OFFICIAL / "tiny_finetune" / "state_dict.safetensors", "pt") as handle:
        keys = list(handle.keys())
    checked = 0
    for key in keys:
        targets = map_original_key(key)
        assert targets is not None, key
        for target in targets:
            assert layer_id(target, num_layers, num_fusion_layers) == official_layer_id(
                key, num_layers, num_fusion_layers
            ), (key, target)
            checked += 1
    assert checked > len(keys)  # fused projections map to several of ours


def test_weight_decay_skips_one_dimensional_parameters_and_biases():
    model = AVFMAEForVideoClassification(tiny_config())
    model.avfmae.audio_encoder.layers[0].mlp.fc1.weight.requires_grad_(False)
    settings = parameter_settings(model)
    assert "avfmae.audio_encoder.layers.0.mlp.fc1.weight" not in settings
    parameters = dict(model.named_parameters())
    for name, setting in settings.items():
        assert setting.weight_decay == (parameters[name].ndim > 1 and not name.endswith(".bias")), name
        assert setting.lr_scale == 1.0
    assert settings["avfmae.video_encoder.region_tokens"].weight_decay
    assert settings["avfmae.fusion.video_aggregation.stage_gate.weight"].weight_decay
    for name in (
        "avfmae.video_layer_weights",
        "avfmae.fusion.refinement.audio_projection.batch_norm.weight",
        "avfmae.fusion.refinement.audio_projection.activation.weight",
        "avfmae.video_encoder.layers.0.local_attention.q_proj.bias",
        "fc_norm.weight",
    ):
        assert not settings[name].weight_decay, name


def test_parameter_groups_cover_every_parameter_once_with_scaled_learning_rates():
    model = AVFMAEForVideoClassification(tiny_config())
    groups = layer_decay_parameter_groups(model, learning_rate=1e-3, weight_decay=0.05, layer_decay=0.75)
    grouped = [id(parameter) for group in groups for parameter in group["params"]]
    assert sorted(grouped) == sorted(id(parameter) for parameter in model.parameters())
    assert groups[0]["lr"] == 1e-3 and groups[0]["weight_decay"] == 0.05, "the top group first"
    for group in groups:
        assert group["lr"] == pytest.approx(1e-3 * 0.75 ** (5 - group["layer_id"]))
        assert group["weight_decay"] in (0.0, 0.05)
    assert len(groups) == 2 * 6
    plain = layer_decay_parameter_groups(AVFMAEForPreTraining(tiny_config()), learning_rate=1e-4)
    assert [(group["lr"], group["weight_decay"]) for group in plain] == [(1e-4, 0.05), (1e-4, 0.0)]
    with pytest.raises(ValueError, match="layer_decay must be in"):
        parameter_settings(model, layer_decay=1.5)


def test_learning_rate_scales_with_the_total_batch():
    assert scale_learning_rate(1e-3, 160) == pytest.approx(6.25e-4)
    assert scale_learning_rate(1.5e-4, 1312) == pytest.approx(7.6875e-4)


def test_trainer_builds_the_official_optimizer(tmp_path):
    model = AVFMAEForVideoClassification(tiny_config())
    args = TrainingArguments(
        output_dir=tmp_path, use_cpu=True, learning_rate=2e-3, weight_decay=0.05, adam_beta2=0.999, report_to="none"
    )
    trainer = AVFMAETrainer(model=model, args=args, layer_decay=0.75)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    rates = {group["layer_id"]: group["lr"] for group in optimizer.param_groups}
    assert rates == {layer: pytest.approx(2e-3 * 0.75 ** (5 - layer)) for layer in range(6)}


# --------------------------------------------------------------------------------------------------------------------
# Metrics and multi-view evaluation (architecture.md §10.3)
# --------------------------------------------------------------------------------------------------------------------


def test_uar_and_war_on_an_imbalanced_example():
    # class 0: 6 samples, 5 right; class 1: 3 samples, 1 right; class 2: 1 sample, right
    references = [0] * 6 + [1] * 3 + [2]
    predictions = [0, 0, 0, 0, 0, 1] + [1, 0, 0] + [2]
    uar = load_metric("uar").compute(predictions=predictions, references=references)
    war = load_metric("war").compute(predictions=predictions, references=references)
    assert uar["uar"] == pytest.approx((5 / 6 + 1 / 3 + 1) / 3)
    assert war["war"] == pytest.approx(7 / 10)
    # a class predicted but never in the references has no recall and is left out
    assert load_metric("uar").compute(predictions=[0, 3], references=[0, 1])["uar"] == pytest.approx(0.5)


def test_weighted_f1_by_hand():
    references = [0] * 6 + [1] * 3 + [2]
    predictions = [0, 0, 0, 0, 0, 1] + [1, 0, 0] + [2]
    # class 0: TP 5, predicted 7, support 6 -> F1 10/13; class 1: TP 1, predicted 2, support 3 -> 2/5; class 2: 1
    f1 = {0: 10 / 13, 1: 2 / 5, 2: 1.0}
    results = load_metric("weighted_f1").compute(predictions=predictions, references=references)
    assert results["weighted_f1"] == pytest.approx((6 * f1[0] + 3 * f1[1] + 1 * f1[2]) / 10)
    assert results["macro_f1"] == pytest.approx(sum(f1.values()) / 3)


def test_ccc_by_hand():
    ccc = load_metric("ccc")
    predictions, references = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 4.0, 4.0]
    # means 2.5 / 3.0; population variances 1.25 / 1.0; covariance 1.0 -> 2 / (1.25 + 1 + 0.25)
    assert ccc.compute(predictions=predictions, references=references)["ccc"] == pytest.approx(0.8)
    assert ccc.compute(predictions=references, references=references)["ccc"] == pytest.approx(1.0)
    assert ccc.compute(predictions=[-x for x in references], references=references)["ccc"] < 0
    two = ccc.compute(
        predictions=[[1.0, 2.0], [2.0, 2.0], [3.0, 4.0], [4.0, 4.0]],
        references=[[2.0, 2.0], [2.0, 2.0], [4.0, 4.0], [4.0, 4.0]],
    )
    assert two["ccc_0"] == pytest.approx(0.8) and two["ccc_1"] == pytest.approx(1.0)
    assert two["ccc"] == pytest.approx(0.9)


def test_compute_metrics_for_the_trainer():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    pooled = np.zeros((4, 8))
    metrics = build_compute_metrics()(EvalPrediction(predictions=(logits, pooled), label_ids=np.array([0, 1, 2, 2])))
    assert metrics["war"] == pytest.approx(0.75)
    assert metrics["uar"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert set(metrics) == {"uar", "war", "weighted_f1", "macro_f1"}
    regression = build_compute_metrics("regression")(
        EvalPrediction(
            predictions=np.array([[1.0], [2.0], [3.0], [4.0]]), label_ids=np.array([[2.0], [2.0], [4.0], [4.0]])
        )
    )
    # CCC 0.8 (test_ccc_by_hand); PCC = covariance 1 / sqrt(1.25 * 1); MSE = (1 + 0 + 1 + 0) / 4
    assert regression == {"ccc": pytest.approx(0.8), "pcc": pytest.approx(1 / 1.25**0.5), "mse": pytest.approx(0.5)}
    with pytest.raises(ValueError, match="Unknown metric"):
        load_metric("accuracy")


def test_metric_modules_ship_as_package_data():
    names = sorted(folder.name for folder in METRICS_DIR.iterdir() if folder.is_dir())
    assert names == ["ccc", "mse", "multilabel_f1", "pcc", "uar", "war", "weighted_f1"]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    patterns = setup["options.package_data"]["avfmae_hf"].split()
    packaged = {
        path.relative_to(ROOT / "avfmae_hf") for pattern in patterns for path in (ROOT / "avfmae_hf").glob(pattern)
    }
    assert {Path("metrics", name, f"{name}.py") for name in names} <= packaged


def test_views_are_combined_by_their_mean_probability():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    combined = combine_view_logits(logits)
    probabilities = logits.softmax(-1).mean(1)
    assert torch.allclose(combined.exp(), probabilities)
    assert torch.allclose(combined.log_softmax(-1), combined)
    assert torch.allclose(combine_view_logits(logits, "regression"), torch.tensor([[1.0, 0.5]]))
    multi = combine_view_logits(logits, "multi_label_classification")
    assert torch.allclose(multi.sigmoid(), logits.sigmoid().mean(1))


def test_trainer_predicts_multi_view_batches_as_the_mean_of_their_views(tmp_path):
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tiny_config()).eval()
    views = torch.randn(3, 2, 16, 3, 16, 16), torch.randn(3, 2, 1, 32, 16)
    items = [{"pixel_values": views[0][i], "audio_values": views[1][i], "labels": torch.tensor(i)} for i in range(3)]
    args = TrainingArguments(output_dir=tmp_path, use_cpu=True, per_device_eval_batch_size=2, report_to="none")
    trainer = AVFMAETrainer(model=model, args=args, data_collator=AVFMAEDataCollator())
    prediction = trainer.predict(items)
    with torch.no_grad():
        per_view = model(views[0].flatten(0, 1), views[1].flatten(0, 1)).logits.view(3, 2, -1)
    expected = combine_view_logits(per_view)
    assert np.allclose(prediction.predictions, expected.numpy(), atol=1e-5)
    loss = torch.nn.functional.cross_entropy(expected, torch.arange(3))
    assert prediction.metrics["test_loss"] == pytest.approx(loss.item(), rel=1e-4)


def test_dataset_epoch_callback_sets_the_epoch():
    class Loader:
        dataset = AVFMAEVideoDataset([ListEntry("x.mp4", None, 0)], AVFMAEProcessor(), seed=0)

    class State:
        epoch = 2.0

    DatasetEpochCallback().on_epoch_begin(None, State(), None, train_dataloader=Loader())
    assert Loader.dataset.epoch == 2


# --------------------------------------------------------------------------------------------------------------------
# Scripts' helpers
# --------------------------------------------------------------------------------------------------------------------


def test_training_progress_gives_the_resume_position():
    progress = TrainingProgress()
    progress.load_state_dict({"completed_steps": 7})
    assert progress.state_dict() == {"completed_steps": 7}
    assert progress.position(update_steps_per_epoch=3, gradient_accumulation_steps=2) == (2, 2)
    assert TrainingProgress(6).position(3) == (2, 0)


def test_mask_generators_depend_on_every_key():
    draw = [torch.rand(4, generator=mask_generator(0, *keys)) for keys in [(0, 0, 1), (0, 0, 1), (1, 0, 1), (0, 1, 1)]]
    assert torch.equal(draw[0], draw[1])
    assert not torch.equal(draw[0], draw[2]) and not torch.equal(draw[0], draw[3])


def test_parse_arguments_takes_a_json_recipe_and_flag_overrides(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps({"output_dir": "from_json", "learning_rate": 0.5, "lr_scheduler_kwargs": {"min_lr_rate": 0.1}})
    )
    parser = HfArgumentParser(TrainingArguments)
    (args,) = parse_arguments(parser, [os.fspath(recipe), "--learning_rate", "0.25", "--use_cpu"])
    assert args.output_dir == "from_json" and args.learning_rate == 0.25 and args.use_cpu
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    recipe.write_text(json.dumps({"not_an_argument": 1}))
    with pytest.raises(ValueError, match="unknown arguments: not_an_argument"):
        parse_arguments(HfArgumentParser(TrainingArguments), [os.fspath(recipe)])
    assert math.isclose(
        parse_arguments(HfArgumentParser(TrainingArguments), ["--learning_rate", "1"])[0].learning_rate, 1
    )
