import json
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining, AVFMAEForVideoClassification
from avfmae_hf.original_config_avfmae import config_from_original
from tests.tiny_configs import tiny_config


OFFICIAL = Path(__file__).parent / "fixtures" / "official"

# architecture.md §2.4: total parameters of the official pretraining / 11-class fine-tuning models
PARAMETER_COUNTS = {
    "base": (187_942_660, 169_122_851),
    "large": (336_322_308, 303_233_319),
    "huge": (572_665_092, 521_309_229),
}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("size", ["base", "large", "huge"])
def test_sizes_have_the_official_parameter_counts(size):
    config = AVFMAEConfig.from_size(size, num_labels=11)
    with torch.device("meta"):
        pretraining = AVFMAEForPreTraining(config)
        classification = AVFMAEForVideoClassification(config)
    assert (count_parameters(pretraining), count_parameters(classification)) == PARAMETER_COUNTS[size]


def test_default_config_is_the_base_size():
    assert AVFMAEConfig().to_diff_dict() == AVFMAEConfig.from_size("base").to_diff_dict()


def test_size_overrides_reach_top_level_and_towers():
    config = AVFMAEConfig.from_size(
        "huge", num_labels=4, drop_path_rate=0.1, video_config={"num_frames": 32, "region_size": (4, 5, 10)}
    )
    assert config.num_labels == 4
    assert config.drop_path_rate == 0.1
    assert config.video_config.num_frames == 32
    assert config.video_config.hidden_size == config.audio_config.hidden_size == 768
    assert config.fusion_num_attention_heads == 12


def test_unknown_size_is_rejected():
    with pytest.raises(ValueError, match="Unknown size"):
        AVFMAEConfig.from_size("giant")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"video_config": {"mask_ratio": 0.75}}, "cannot be grouped into 8 regions"),
        ({"audio_config": {"mask_ratio": 0.8}}, "cannot be grouped into 8 regions"),
        ({"video_config": {"num_frames": 15}}, "num_frames \\(15\\) must be divisible by tubelet_size"),
        ({"video_config": {"num_frames": 14}}, "region_size \\(2, 5, 10\\) must divide the token grid"),
        ({"video_config": {"hidden_size": 500}}, "hidden_size \\(500\\) must be divisible by num_attention_heads"),
        ({"audio_config": {"decoder_num_attention_heads": 5}}, "decoder_hidden_size \\(384\\) must be divisible"),
        ({"video_config": {"intermediate_layer_indices": (3, 9)}}, "must have decoder_num_hidden_layers - 1 = 3"),
        ({"video_config": {"intermediate_layer_indices": (3, 6, 10)}}, "increasing layer indices in \\[0, 10\\)"),
        ({"video_config": {"image_size": 150}}, "image_size \\(150\\) must be divisible by patch_size"),
        ({"video_config": {"decoder_masking_strategy": "tube"}}, "decoder_masking_strategy 'tube' is not one of"),
        ({"video_config": {"decoder_mask_ratio": 0.1}}, "running-cell decoder mask needs 1-3 masked entries"),
        ({"audio_config": {"hidden_size": 640, "num_attention_heads": 10}}, "must equal audio_config.hidden_size"),
        ({"audio_config": {"region_size": (4, 8)}}, "same number of regions"),
        ({"fusion_num_attention_heads": 7}, "divisible by fusion_num_attention_heads"),
    ],
)
def test_invalid_configurations_raise_value_errors_naming_the_rule(overrides, message):
    with pytest.raises(ValueError, match=message):
        AVFMAEConfig.from_size("base", **overrides)


def test_release_mask_ratios_pass_the_grouping_rule():
    config = AVFMAEConfig.from_size("base")
    assert config.video_config.num_visible_tokens == 80
    assert config.audio_config.num_visible_tokens == 24


def test_video_only_config_does_not_check_audio_compatibility():
    config = AVFMAEConfig.from_size(
        "base", use_audio=False, audio_config={"hidden_size": 640, "num_attention_heads": 10}
    )
    assert not config.use_audio


def test_save_and_load_round_trip(tmp_path):
    config = tiny_config(id2label={0: "anger", 1: "joy"}, drop_path_rate=0.1)
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, AVFMAEConfig)
    assert reloaded.to_diff_dict() == config.to_diff_dict()
    assert reloaded.id2label == {0: "anger", 1: "joy"}
    assert tuple(reloaded.video_config.region_size) == (2, 2, 4)


def load_json(name: str) -> dict:
    return json.loads((OFFICIAL / name).read_text())


def test_from_original_reads_tiny_constructor_kwargs():
    pretraining = config_from_original(load_json("tiny_pretrain/config.json")["constructor_kwargs"])
    assert pretraining.video_config.hidden_size == 64
    assert pretraining.video_config.decoder_hidden_size == 32
    assert pretraining.video_config.decoder_num_hidden_layers == 3
    assert tuple(pretraining.video_config.intermediate_layer_indices) == (0, 1)
    assert pretraining.audio_config.max_length == 32 and pretraining.audio_config.num_mel_bins == 16
    assert pretraining.video_config.patch_dim == 96 and pretraining.audio_config.patch_dim == 16

    finetuning = config_from_original(load_json("tiny_finetune/config.json")["constructor_kwargs"])
    assert finetuning.num_labels == 7
    assert finetuning.drop_path_rate == 0.1
    assert tuple(finetuning.audio_config.region_size) == (2, 2)


@pytest.mark.parametrize("name", ["keys_pretrain_huge.json", "keys_finetune_large.json"])
def test_from_original_uses_the_registered_widths_of_the_entry_point(name):
    description = load_json(name)
    config = config_from_original({"model": description["constructor"], **description["constructor_kwargs"]})
    width = {"huge": 768, "large": 640}[description["variant"].split("_")[1]]
    assert config.video_config.hidden_size == width


def test_from_original_reads_a_training_script_namespace():
    # the arguments a release fine-tuning script passes (MAFW, huge)
    args = Namespace(
        model="avit_dim768_patch16_160_a256",
        depth=15,
        depth_audio=15,
        fusion_depth=2,
        input_size=160,
        input_size_audio=256,
        num_mel_bins=128,
        num_frames=16,
        tubelet_size=2,
        nb_classes=11,
        drop_path=0.1,
        attn_type="local_global",
        lg_region_size=[2, 5, 10],
        lg_region_size_audio=[4, 4],
        lg_classify_token_type="region",
        lg_no_second=False,
    )
    config = config_from_original(args)
    with torch.device("meta"):
        model = AVFMAEForVideoClassification(config)
    assert count_parameters(model) == PARAMETER_COUNTS["huge"][1]


def test_from_original_rejects_options_the_release_never_used():
    with pytest.raises(ValueError, match="lg_no_third"):
        config_from_original({"model": "pretrain_hicmae_dim512_patch16_160_a256", "lg_no_third": True})
