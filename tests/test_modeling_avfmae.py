import copy

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForVideoClassification

from avfmae_hf import (
    AVFMAEConfig,
    AVFMAEForPreTraining,
    AVFMAEForPreTrainingOutput,
    AVFMAEForVideoClassification,
    AVFMAEModel,
    AVFMAEModelOutput,
)
from avfmae_hf.modeling_avfmae import (
    group_visible_tokens,
    partition_regions,
    patchify,
    sinusoid_position_table,
    unpatchify,
)
from tests.tiny_configs import tiny_config, tiny_inputs


class AVFMAEModelTester:
    """Tiny models and the shapes they must produce (hidden 32, 2 layers, 8 regions per tower)."""

    batch_size = 2

    def __init__(self, **overrides):
        self.config = tiny_config(**overrides)
        self.inputs = tiny_inputs(self.config, self.batch_size)

    def create_and_check_model(self):
        model = AVFMAEModel(self.config).eval()
        outputs = model(**self.inputs, output_hidden_states=True)
        assert isinstance(outputs, AVFMAEModelOutput)
        assert outputs.video_last_hidden_state.shape == (2, 8, 32)
        assert outputs.audio_last_hidden_state.shape == (2, 8, 32)
        assert outputs.overall_token.shape == (2, 8, 32)
        assert outputs.pooler_output.shape == (2, 64)
        assert len(outputs.video_hidden_states) == len(outputs.audio_hidden_states) == 2
        assert outputs.video_hidden_states[0].shape == (2, 8, 32)
        return outputs

    def create_and_check_for_pretraining(self):
        model = AVFMAEForPreTraining(self.config)
        outputs = model(**self.inputs, generator=torch.Generator().manual_seed(0))
        assert isinstance(outputs, AVFMAEForPreTrainingOutput)
        # tube 0.75 of 8x4x4 and running cell 0.5 for video; random 0.5 / 0.5 of 8x4 for audio
        assert outputs.video_logits.shape == (2, 64, 2 * 4 * 4 * 3)
        assert outputs.audio_logits.shape == (2, 16, 4 * 4)
        assert outputs.video_targets.shape == outputs.video_logits.shape
        assert len(outputs.contrastive_logits) == 2 and outputs.contrastive_logits[0].shape == (2, 2)
        assert outputs.video_hidden_states[-1].shape == (2, 32, 32)  # visible tokens only
        assert outputs.audio_hidden_states[-1].shape == (2, 16, 32)
        expected = outputs.video_loss + outputs.audio_loss + 0.0025 * outputs.contrastive_loss
        torch.testing.assert_close(outputs.loss, expected)
        return outputs

    def create_and_check_for_video_classification(self):
        model = AVFMAEForVideoClassification(self.config).eval()
        outputs = model(**self.inputs, labels=torch.tensor([1, 3]))
        assert outputs.logits.shape == (2, 5)
        assert outputs.loss.ndim == 0
        return outputs


@pytest.fixture
def tester():
    torch.manual_seed(0)
    return AVFMAEModelTester()


def test_model_outputs(tester):
    tester.create_and_check_model()


def test_pretraining_outputs(tester):
    tester.create_and_check_for_pretraining()


def test_classification_outputs(tester):
    tester.create_and_check_for_video_classification()


def test_return_dict_false_gives_tuples_with_loss_first(tester):
    model = AVFMAEForVideoClassification(tester.config).eval()
    labels = torch.tensor([0, 4])
    as_tuple = model(**tester.inputs, labels=labels, return_dict=False)
    as_dict = model(**tester.inputs, labels=labels)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)


def test_eager_and_sdpa_agree(tester):
    torch.manual_seed(1)
    sdpa = AVFMAEForPreTraining(copy.deepcopy(tester.config)).eval()
    eager = AVFMAEForPreTraining(copy.deepcopy(tester.config)).eval()
    eager.load_state_dict(sdpa.state_dict())
    eager.set_attn_implementation("eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    with torch.no_grad():
        first = sdpa(**tester.inputs, generator=torch.Generator().manual_seed(3))
        second = eager(**tester.inputs, generator=torch.Generator().manual_seed(3))
    for name in ("loss", "video_logits", "audio_logits", "contrastive_loss"):
        torch.testing.assert_close(first[name], second[name], atol=1e-5, rtol=1e-5)

    classifier = AVFMAEForVideoClassification(tester.config).eval()
    with torch.no_grad():
        reference = classifier(**tester.inputs).logits
        classifier.set_attn_implementation("eager")
        torch.testing.assert_close(classifier(**tester.inputs).logits, reference, atol=1e-5, rtol=1e-5)


def test_attentions_are_returned_with_eager_attention(tester):
    model = AVFMAEModel._from_config(tester.config, attn_implementation="eager").eval()
    outputs = model(**tester.inputs, output_attentions=True)
    # per tower: 2 layers x 4 attentions; fusion: 2 layers x 2 branches x 2 + 2 aggregations + 2 overall reads
    assert len(outputs.attentions) == 2 * 8 + 8 + 2 + 2
    local = outputs.attentions[0]
    assert local.shape == (2 * 8, 4, 17, 17)  # (B * R, heads, 1 + K, 1 + K)
    torch.testing.assert_close(local.sum(-1), torch.ones_like(local.sum(-1)))
    assert model(**tester.inputs).attentions is None


def test_hidden_states_follow_the_config_default(tester):
    tester.config.output_hidden_states = True
    outputs = AVFMAEModel(tester.config).eval()(**tester.inputs)
    assert len(outputs.video_hidden_states) == 2


def test_gradient_checkpointing_gives_the_same_gradients(tester):
    torch.manual_seed(0)
    model = AVFMAEForPreTraining(tester.config)
    reference = model(**tester.inputs, generator=torch.Generator().manual_seed(0)).loss
    reference.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    loss = model(**tester.inputs, generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    torch.testing.assert_close(loss, reference)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], msg=name)


def test_every_parameter_gets_a_gradient_in_classification_training(tester):
    model = AVFMAEForVideoClassification(tester.config).train()
    model(**tester.inputs, labels=torch.tensor([1, 2])).loss.backward()
    without_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without_grad == []


def test_pretraining_parameters_without_gradient_are_the_documented_ones(tester):
    # architecture notes: with one overall token the fusion's overall query and key side and the last encoder
    # layer's local-to-region step cannot influence the pretraining outputs (their gradients are exact zeros, since
    # that work is skipped); everything else must learn
    model = AVFMAEForPreTraining(tester.config).train()
    model(**tester.inputs, generator=torch.Generator().manual_seed(0)).loss.backward()
    without_grad = {name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    allowed = (
        "local_to_region",
        "overall_attention.q_proj",
        "overall_attention.k_proj",
        "video_overall_norm",
        "audio_overall_norm",
    )
    assert all(any(part in name for part in allowed) for name in without_grad), without_grad
    assert any("decoder" in name for name, _ in model.named_parameters())


def test_drop_path_is_active_only_in_training():
    config = tiny_config(drop_path_rate=0.5)
    inputs = tiny_inputs(config)
    model = AVFMAEForVideoClassification(config)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**inputs).logits)
        model.train()
        torch.manual_seed(0)
        first = model(**inputs).logits
        torch.manual_seed(1)
        assert not torch.equal(first, model(**inputs).logits)


@pytest.mark.parametrize(
    ("problem_type", "labels", "num_labels"),
    [
        ("single_label_classification", torch.tensor([0, 2]), 3),
        ("multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), 3),
        ("regression", torch.tensor([[0.1, -0.2, 0.3], [0.5, 0.0, -0.1]]), 3),
    ],
)
def test_classification_problem_types(problem_type, labels, num_labels):
    config = tiny_config(num_labels=num_labels, problem_type=problem_type)
    model = AVFMAEForVideoClassification(config).eval()
    outputs = model(**tiny_inputs(config), labels=labels)
    logits = outputs.logits
    expected = {
        "single_label_classification": lambda: torch.nn.functional.cross_entropy(logits, labels),
        "multi_label_classification": lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, labels),
        "regression": lambda: torch.nn.functional.mse_loss(logits, labels),
    }[problem_type]()
    torch.testing.assert_close(outputs.loss, expected)


def test_video_only_model_has_no_audio_parts():
    config = tiny_config(use_audio=False)
    model = AVFMAEForVideoClassification(config).eval()
    assert not any(
        "audio" in name or "fusion" in name or "layer_weights" in name for name, _ in model.named_parameters()
    )
    outputs = model(tiny_inputs(config)["pixel_values"], output_hidden_states=True)
    assert outputs.logits.shape == (2, 5)
    assert outputs.pooler_output.shape == (2, 32)
    # the pooled feature is the mean of the last layer's normalised region tokens
    backbone = model.avfmae(tiny_inputs(config)["pixel_values"])
    torch.testing.assert_close(backbone.pooler_output, outputs.video_hidden_states[-1].mean(1))
    with pytest.raises(ValueError, match="video-only"):
        model(**tiny_inputs(tiny_config()))
    with pytest.raises(ValueError, match="needs config.use_audio=True"):
        AVFMAEForPreTraining(config)


def test_masks_are_drawn_reproducibly_with_the_configured_strategies(tester):
    model = AVFMAEForPreTraining(tester.config)
    first = model(**tester.inputs, generator=torch.Generator().manual_seed(5))
    second = model(**tester.inputs, generator=torch.Generator().manual_seed(5))
    third = model(**tester.inputs, generator=torch.Generator().manual_seed(6))
    for name in ("video_bool_masked_pos", "video_decoder_bool_masked_pos", "audio_bool_masked_pos"):
        assert torch.equal(first[name], second[name])
    assert not torch.equal(first.video_bool_masked_pos, third.video_bool_masked_pos)
    torch.testing.assert_close(first.loss, second.loss)
    video_mask = first.video_bool_masked_pos.view(2, 8, 16)
    assert torch.equal(video_mask, video_mask[:, :1].expand_as(video_mask))  # tube: same mask in every slice
    assert first.video_bool_masked_pos.sum(1).tolist() == [8 * 12, 8 * 12]
    assert first.audio_bool_masked_pos.sum(1).tolist() == [16, 16]
    assert first.video_decoder_bool_masked_pos.sum(1).tolist() == [64, 64]


def test_given_masks_are_used_and_validated(tester):
    model = AVFMAEForPreTraining(tester.config)
    drawn = model.masking(2, generator=torch.Generator().manual_seed(0))
    outputs = model(**tester.inputs, **vars(drawn))
    assert torch.equal(outputs.video_bool_masked_pos, drawn.video_bool_masked_pos)
    # reconstruct exactly the hidden tokens
    outputs = model(**tester.inputs, **{**vars(drawn), "video_decoder_bool_masked_pos": ~drawn.video_bool_masked_pos})
    assert outputs.video_logits.shape[1] == 96

    uneven = drawn.audio_bool_masked_pos.clone()
    uneven[0, uneven[0].nonzero()[0]] = False
    with pytest.raises(ValueError, match="same number of tokens per sample"):
        model(**tester.inputs, audio_bool_masked_pos=uneven)
    with pytest.raises(ValueError, match=r"must have shape \(batch_size, 32\)"):
        model(**tester.inputs, audio_bool_masked_pos=torch.zeros(2, 31, dtype=torch.bool))
    too_few = torch.zeros(2, 32, dtype=torch.bool)
    too_few[:, :3] = True  # 29 visible cannot be grouped into 8 regions
    with pytest.raises(ValueError, match="cannot be grouped into 8 regions"):
        model(**tester.inputs, audio_bool_masked_pos=too_few)


def test_wrong_input_shapes_name_the_expected_shape(tester):
    model = AVFMAEForVideoClassification(tester.config).eval()
    with pytest.raises(ValueError, match=r"\(batch_size, 16, 3, 16, 16\).*got \(2, 3, 16, 16, 16\)"):
        model(tester.inputs["pixel_values"].transpose(1, 2), tester.inputs["audio_values"])
    with pytest.raises(ValueError, match=r"audio_values must have shape \(batch_size, 1, time, mel\)"):
        model(tester.inputs["pixel_values"], tester.inputs["audio_values"][:, :, :16])
    with pytest.raises(ValueError, match="pass audio_values"):
        model(tester.inputs["pixel_values"])
    with pytest.raises(ValueError, match="same batch size"):
        model(tester.inputs["pixel_values"], tester.inputs["audio_values"][:1])
    backbone = AVFMAEModel(tester.config)
    with pytest.raises(ValueError, match="both video_bool_masked_pos and audio_bool_masked_pos"):
        backbone(**tester.inputs, video_bool_masked_pos=torch.zeros(2, 128, dtype=torch.bool))


def test_initialisation_follows_the_official_scheme(tester):
    torch.manual_seed(0)
    model = AVFMAEForPreTraining(tester.config)
    std = tester.config.initializer_range
    tokens = model.avfmae.video_encoder.region_tokens
    assert tokens.abs().max() <= std and tokens.std() > 0
    assert model.video_decoder.mask_token.abs().max() <= std
    assert torch.equal(model.avfmae.fusion.refinement.layernorm.weight, torch.ones(32))
    assert model.avfmae.fusion.refinement.layernorm.eps == 1e-5
    assert model.avfmae.video_encoder.layernorm.eps == 1e-6
    assert torch.all(model.avfmae.fusion.refinement.audio_projection.activation.weight == 0.25)
    assert torch.all(model.avfmae.fusion.overall_projection.bias == 0)
    torch.testing.assert_close(
        model.avfmae.video_embeddings.position_embeddings, sinusoid_position_table(128, 32), atol=0, rtol=0
    )
    classifier = AVFMAEForVideoClassification(tester.config)
    torch.testing.assert_close(classifier.avfmae.video_layer_weights, torch.full((2,), 0.5))
    assert classifier.classifier.bias.abs().sum() > 0  # PyTorch default init, not zeros
    assert all(torch.isfinite(p).all() for p in classifier.parameters())


def test_sinusoid_table_interleaves_sin_and_cos():
    table = sinusoid_position_table(10, 6)
    assert torch.allclose(table[3, 0], torch.sin(torch.tensor(3.0)))
    assert torch.allclose(table[3, 1], torch.cos(torch.tensor(3.0)))
    assert torch.allclose(table[3, 2], torch.sin(torch.tensor(3.0) / 10000 ** (2 / 6)))


def test_region_partition_uses_true_windows():
    grid, region = (4, 2, 2), (2, 1, 2)
    tokens = torch.arange(16.0).view(1, 16, 1)
    regions = partition_regions(tokens, grid, region).squeeze(-1)
    # region (t_chunk, h_chunk): rows h of slices 2t and 2t+1
    assert regions.tolist() == [[[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]]


def test_pretraining_grouping_is_by_order_as_in_the_official_model():
    # architecture.md §4.1: visible tokens viewed as (time regions, t, spatial regions, k), regrouped region-major
    grid, region = (8, 10, 10), (2, 5, 10)
    visible = torch.arange(80.0).view(1, 80, 1)
    groups = group_visible_tokens(visible, grid, region).squeeze(-1)
    assert groups.shape == (1, 8, 10)
    assert groups[0, 0].tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert groups[0, 1].tolist() == [5, 6, 7, 8, 9, 15, 16, 17, 18, 19]


def test_patchify_orders_frames_rows_columns_then_channels():
    values = torch.arange(2 * 3 * 4 * 4.0).view(1, 2, 3, 4, 4)  # (B, T, C, H, W)
    patches = patchify(values, tubelet_size=2, patch_size=2)
    assert patches.shape == (1, 4, 8, 3)
    # first token = top-left 2x2 of both frames; value index = frame * 4 + row * 2 + column
    assert patches[0, 0, :, 0].tolist() == values[0, :, 0, :2, :2].flatten().tolist()
    assert patches[0, 1, 0].tolist() == values[0, 0, :, 0, 2].tolist()


def test_unpatchify_puts_every_value_back_where_patchify_took_it():
    values = torch.arange(4 * 3 * 4 * 6.0).view(1, 4, 3, 4, 6)  # (B, T, C, H, W), every value distinct
    patches = patchify(values, tubelet_size=2, patch_size=2)
    assert torch.equal(unpatchify(patches, num_frames=4, height=4, width=6, patch_size=2), values)
    spectrogram = torch.arange(8 * 4.0).view(1, 1, 1, 8, 4)  # one frame, one channel
    audio_patches = patchify(spectrogram, tubelet_size=1, patch_size=2)
    assert torch.equal(unpatchify(audio_patches, num_frames=1, height=8, width=4, patch_size=2), spectrogram)


def test_save_and_load_every_head_through_auto_classes(tmp_path, tester):
    inputs = tester.inputs
    for model_class, auto_class in (
        (AVFMAEModel, AutoModel),
        (AVFMAEForPreTraining, AutoModelForPreTraining),
        (AVFMAEForVideoClassification, AutoModelForVideoClassification),
    ):
        model = model_class(tester.config).eval()
        folder = tmp_path / model_class.__name__
        model.save_pretrained(folder)
        assert (folder / "model.safetensors").is_file()
        assert isinstance(AutoConfig.from_pretrained(folder), AVFMAEConfig)
        reloaded = auto_class.from_pretrained(folder).eval()
        assert type(reloaded) is model_class
        for key, value in model.state_dict().items():
            assert torch.equal(value, reloaded.state_dict()[key]), key
        kwargs = {"generator": torch.Generator().manual_seed(0)} if model_class is AVFMAEForPreTraining else {}
        with torch.no_grad():
            first, second = (
                model(**inputs, **kwargs),
                reloaded(**inputs, **{k: torch.Generator().manual_seed(0) for k in kwargs}),
            )
        key = {"AVFMAEModel": "pooler_output", "AVFMAEForPreTraining": "loss"}.get(model_class.__name__, "logits")
        torch.testing.assert_close(first[key], second[key], atol=0, rtol=0)
        # buffers that are not saved are rebuilt exactly
        torch.testing.assert_close(
            reloaded.state_dict(keep_vars=True)
            and dict(reloaded.named_buffers())[
                next(n for n, _ in reloaded.named_buffers() if n.endswith("video_embeddings.position_embeddings"))
            ],
            sinusoid_position_table(128, 32),
            atol=0,
            rtol=0,
        )


def test_pretraining_weights_hand_off_to_classification(tmp_path, tester):
    pretraining = AVFMAEForPreTraining(tester.config)
    pretraining.save_pretrained(tmp_path)
    classifier = AVFMAEForVideoClassification.from_pretrained(tmp_path, num_labels=3)
    assert classifier.config.num_labels == 3
    source = pretraining.state_dict()
    for key, value in classifier.state_dict().items():
        if key in source:
            assert torch.equal(value, source[key]), key
    assert sum(key in source for key in classifier.state_dict()) > 100
    torch.testing.assert_close(classifier.avfmae.video_layer_weights, torch.full((2,), 0.5))


@pytest.mark.slow
def test_base_model_forward_shapes():
    config = AVFMAEConfig.from_size("base", num_labels=11)
    model = AVFMAEForVideoClassification(config).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 16, 3, 160, 160), torch.randn(1, 1, 256, 128))
    assert outputs.logits.shape == (1, 11)


@pytest.mark.slow
def test_torch_compile_matches_eager_execution(tester):
    model = AVFMAEForVideoClassification(tester.config).eval()
    with torch.no_grad():
        reference = model(**tester.inputs).logits
        compiled = torch.compile(model)(**tester.inputs).logits
    torch.testing.assert_close(compiled, reference, atol=1e-5, rtol=1e-5)
