import json
import math
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avfmae_hf import (
    AVFMAEConfig,
    AVFMAEForPreTraining,
    AVFMAEForVideoClassification,
    AVFMAEModel,
    convert_original_state_dict,
)
from avfmae_hf.convert_avfmae import ORIGINAL_TO_HF_KEY_MAPPING, map_original_key
from avfmae_hf.labels_avfmae import dataset_id2label, official_dataset_name
from avfmae_hf.original_config_avfmae import config_from_original, describe_original_state_dict, merge_original_kwargs
from tests.tiny_configs import tiny_config


OFFICIAL = Path(__file__).parent / "fixtures" / "official"
VARIANTS = [f"keys_{task}_{size}.json" for task in ("pretrain", "finetune") for size in ("base", "large", "huge")]


def official_meta_state_dict(description: dict) -> dict[str, torch.Tensor]:
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    return {
        entry["key"]: torch.empty(entry["shape"], dtype=dtypes[entry["dtype"]], device="meta")
        for entry in description["state_dict"]
    }


@pytest.mark.parametrize("name", VARIANTS)
def test_every_official_key_of_the_real_variants_fills_every_parameter(name):
    description = json.loads((OFFICIAL / name).read_text())
    official = official_meta_state_dict(description)
    assert len(official) == description["num_state_dict_entries"]
    config = config_from_original({"model": description["constructor"], **description["constructor_kwargs"]})
    model_class = AVFMAEForPreTraining if "pretrain" in name else AVFMAEForVideoClassification
    with torch.device("meta"):
        model = model_class(config)

    converted, report = convert_original_state_dict(official, config, return_report=True)

    ours = model.state_dict()
    assert sorted(report.mapped) == sorted(official), "every official key is consumed"
    assert not report.dropped and not report.initialized
    assert set(converted) == set(ours), "every parameter and persistent buffer is filled"
    for key, value in converted.items():
        assert value.shape == ours[key].shape, key
    assert sum(v.numel() for v in converted.values()) == description["state_dict_numel"]
    assert sum(p.numel() for p in model.parameters()) == description["total_params"]


def test_fused_projections_are_split_by_rows():
    # q rows first, then k, then v (architecture.md §3.1); kv: k rows then v rows (§3.2)
    assert map_original_key("encoder_fusion.blocks.0.attn.qkv.weight") == (
        "avfmae.fusion.layers.0.video_branch.self_attention.q_proj.weight",
        "avfmae.fusion.layers.0.video_branch.self_attention.k_proj.weight",
        "avfmae.fusion.layers.0.video_branch.self_attention.v_proj.weight",
    )
    assert map_original_key("encoder_audio.blocks.3.third_attn.kv.weight") == (
        "avfmae.audio_encoder.layers.3.region_to_local_attention.k_proj.weight",
        "avfmae.audio_encoder.layers.3.region_to_local_attention.v_proj.weight",
    )
    assert map_original_key("encoder.blocks.0.first_attn.q_bias") == (
        "avfmae.video_encoder.layers.0.local_attention.q_proj.bias",
    )
    assert map_original_key("decoder_audio.blocks.2.cross_attn.v_bias") == (
        "audio_decoder.layers.2.cross_attention.v_proj.bias",
    )
    assert map_original_key("encoder.blocks.0.fifth_attn.q_bias") is None
    assert len(ORIGINAL_TO_HF_KEY_MAPPING) > 100


def test_split_values_land_in_the_right_projections():
    official = load_file(OFFICIAL / "tiny_pretrain" / "state_dict.safetensors")
    config = tiny_pretrain_config()
    converted = convert_original_state_dict(official, config)
    qkv = official["encoder_fusion.blocks.1.attn_new.qkv.weight"]
    width = qkv.shape[1]
    prefix = "avfmae.fusion.layers.1.audio_branch.self_attention"
    assert torch.equal(converted[f"{prefix}.q_proj.weight"], qkv[:width])
    assert torch.equal(converted[f"{prefix}.k_proj.weight"], qkv[width : 2 * width])
    assert torch.equal(converted[f"{prefix}.v_proj.weight"], qkv[2 * width :])
    assert torch.equal(converted[f"{prefix}.q_proj.bias"], official["encoder_fusion.blocks.1.attn_new.q_bias"])


def tiny_pretrain_config() -> AVFMAEConfig:
    return config_from_original(
        json.loads((OFFICIAL / "tiny_pretrain" / "config.json").read_text())["constructor_kwargs"]
    )


@pytest.mark.parametrize("wrap", ["model", "module", "prefix_module", "prefix_orig_mod"])
def test_checkpoint_wrappers_and_prefixes_are_handled(wrap):
    official = load_file(OFFICIAL / "tiny_pretrain" / "state_dict.safetensors")
    wrapped = {
        "model": {"model": official, "epoch": 99},
        "module": {"module": official},
        "prefix_module": {f"module.{k}": v for k, v in official.items()},
        "prefix_orig_mod": {f"_orig_mod.{k}": v for k, v in official.items()},
    }[wrap]
    assert convert_original_state_dict(wrapped, tiny_pretrain_config()).keys() == (
        convert_original_state_dict(official, tiny_pretrain_config()).keys()
    )


def test_unknown_and_missing_keys_are_listed():
    official = load_file(OFFICIAL / "tiny_pretrain" / "state_dict.safetensors")
    config = tiny_pretrain_config()
    with pytest.raises(ValueError, match=r"1 official keys have no mapping.*encoder\.blocks\.0\.extra_norm\.weight"):
        convert_original_state_dict({**official, "encoder.blocks.0.extra_norm.weight": torch.zeros(64)}, config)
    incomplete = {k: v for k, v in official.items() if k != "encoder_fusion.norm_audio.bias"}
    with pytest.raises(ValueError, match=r"have no official source.*audio_aggregation\.attention_norm\.bias"):
        convert_original_state_dict(incomplete, config)


def test_wrong_size_is_reported_as_shape_mismatch():
    official = load_file(OFFICIAL / "tiny_pretrain" / "state_dict.safetensors")
    config = tiny_config()  # hidden size 32, the checkpoint has 64
    with pytest.raises(ValueError, match="shapes differ from the config"):
        convert_original_state_dict(official, config)


def test_not_an_avfmae_checkpoint():
    with pytest.raises(ValueError, match="not an official AVF-MAE\\+\\+ state dict"):
        convert_original_state_dict({"conv.weight": torch.zeros(1)}, tiny_config())


def test_pretraining_checkpoint_converts_into_a_classifier_with_a_report():
    official = load_file(OFFICIAL / "tiny_pretrain" / "state_dict.safetensors")
    config = tiny_pretrain_config()
    config.num_labels = 3
    converted, report = convert_original_state_dict(official, config, target_task="classification", return_report=True)
    assert report.source_task == "pretraining" and report.target_task == "classification"
    assert all(k.startswith(("decoder", "encoder_to_decoder", "mask_token")) for k in report.dropped)
    assert len(report.dropped) == sum(k.startswith(("decoder", "encoder_to_decoder", "mask_token")) for k in official)
    assert set(report.initialized) == {
        "avfmae.video_layer_weights",
        "avfmae.audio_layer_weights",
        "fc_norm.weight",
        "fc_norm.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert "newly initialised" in report.summary()
    model = AVFMAEForVideoClassification(config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert sorted(missing) == sorted(report.initialized) and not unexpected
    assert torch.equal(model.avfmae.video_encoder.region_tokens, official["encoder.lg_region_tokens"])
    assert math.isclose(model.avfmae.video_layer_weights[0].item(), 1 / 2)


def test_classification_checkpoint_cannot_become_pretraining_but_can_become_a_backbone():
    official = load_file(OFFICIAL / "tiny_finetune" / "state_dict.safetensors")
    config = config_from_original(
        json.loads((OFFICIAL / "tiny_finetune" / "config.json").read_text())["constructor_kwargs"]
    )
    with pytest.raises(ValueError, match="cannot become a pretraining model"):
        convert_original_state_dict(official, config, target_task="pretraining")
    backbone_weights, report = convert_original_state_dict(
        official, config, target_task="backbone", return_report=True
    )
    assert sorted(report.dropped) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    backbone = AVFMAEModel(config)
    backbone.load_state_dict(backbone_weights, strict=True)


@pytest.mark.parametrize("name", VARIANTS)
def test_sizes_are_read_from_the_weights_of_the_real_variants(name):
    description = json.loads((OFFICIAL / name).read_text())
    architecture = describe_original_state_dict(official_meta_state_dict(description))
    size = name.removesuffix(".json").split("_")[-1]
    released = AVFMAEConfig.from_size(size)
    assert architecture.size == size
    assert architecture.task == ("pretraining" if "pretrain" in name else "classification")
    assert (architecture.hidden_size, architecture.num_hidden_layers, architecture.audio_num_hidden_layers) == (
        released.video_config.hidden_size,
        released.video_config.num_hidden_layers,
        released.audio_config.num_hidden_layers,
    )
    assert (architecture.patch_size, architecture.tubelet_size, architecture.audio_patch_size) == (16, 2, 16)
    assert architecture.fusion_num_hidden_layers == 2 and architecture.num_region_tokens == 8
    if architecture.task == "pretraining":
        assert architecture.decoder_hidden_size == released.video_config.decoder_hidden_size
        assert architecture.decoder_num_hidden_layers == architecture.audio_decoder_num_hidden_layers == 4
        assert architecture.num_labels is None
    else:
        assert architecture.num_labels == 11 and architecture.decoder_hidden_size is None


def test_tiny_fixture_sizes_match_no_released_variant():
    architecture = describe_original_state_dict(load_file(OFFICIAL / "tiny_pretrain" / "state_dict.safetensors"))
    assert architecture.size is None
    assert (architecture.hidden_size, architecture.num_hidden_layers, architecture.intermediate_size) == (64, 2, 256)
    assert (architecture.decoder_hidden_size, architecture.decoder_num_hidden_layers) == (32, 3)


@pytest.mark.parametrize(
    "state_dict, message",
    [
        (
            {"patch_embed.proj.weight": torch.zeros(8, 3, 16, 16), "blocks.0.attn.qkv.weight": torch.zeros(24, 8)},
            "no 'encoder.patch_embed.proj.weight'",
        ),
        (
            {
                "encoder.patch_embed.proj.weight": torch.zeros(8, 3, 2, 16, 16),
                "encoder.blocks.0.attn.qkv.weight": torch.zeros(24, 8),
                "decoder.blocks.0.attn.qkv.weight": torch.zeros(12, 4),
            },
            "no an audio encoder.*video-only ViT / VideoMAE",
        ),
        ({"avfmae.video_embeddings.projection.weight": torch.zeros(1)}, "already uses this package's parameter names"),
    ],
    ids=["vit", "videomae", "already-converted"],
)
def test_other_architectures_are_named_as_such(state_dict, message):
    with pytest.raises(ValueError, match=message):
        describe_original_state_dict(state_dict)


def test_training_arguments_replace_every_alias_they_set():
    detected = {"encoder_depth": 15, "num_classes": 11, "model": "avit_dim768_patch16_160_a256", "patch_size": 16}
    merged = merge_original_kwargs(detected, Namespace(depth=12, nb_classes=7, model=None, lr=1e-3))
    assert merged == {
        "depth": 12,
        "nb_classes": 7,
        "model": "avit_dim768_patch16_160_a256",
        "patch_size": 16,
        "lr": 1e-3,
    }


def test_official_label_orders():
    assert dataset_id2label("MAFW")[10] == "disappointment" and len(dataset_id2label("mafw")) == 11
    assert dataset_id2label("crema-d") == dict(enumerate(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]))
    assert dataset_id2label("CREMA_D", 4) == dict(enumerate(["ANG", "HAP", "NEU", "SAD"]))
    assert dataset_id2label("mer24") == dict(enumerate(["worried", "happy", "neutral", "angry", "surprise", "sad"]))
    assert dataset_id2label("MSP-IMPROV") == dict(enumerate("AHNS"))
    assert official_dataset_name("mer24_labeled") == "MER24-LABELED"
    for dataset, count in [("DFEW", 7), ("RAVDESS", 8), ("IEMOCAP", 4), ("MER2023", 6), ("AVCAFFE", 5), ("MAFW", 43)]:
        with pytest.raises(ValueError, match=rf"{dataset} \({count} classes\) as integer labels.*pass id2label"):
            dataset_id2label(dataset, count)
    with pytest.raises(ValueError, match="trains CREMA-D with 6 or 4 classes, not 5"):
        dataset_id2label("CREMA-D", 5)
    with pytest.raises(ValueError, match="Unknown dataset 'Kinetics-400'"):
        dataset_id2label("Kinetics-400")
