import copy
import unittest

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForVideoClassification, pipeline
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import avfmae_hf.modeling_avfmae as modeling
from avfmae_hf import (
    AVFMAEConfig,
    AVFMAEForPreTraining,
    AVFMAEForPreTrainingOutput,
    AVFMAEForVideoClassification,
    AVFMAEModel,
    AVFMAEModelOutput,
    AVFMAEVideoProcessor,
)
from avfmae_hf.checkpoint_avfmae import random_inputs
from avfmae_hf.masking_avfmae import AVFMAEDualMaskingGenerator
from avfmae_hf.modeling_avfmae import (
    group_visible_tokens,
    partition_regions,
    patchify,
    sinusoid_position_table,
    unpatchify,
)
from tests.media.synthetic import index_frames, write_video
from tests.test_parity_official import build
from tests.tiny_configs import tiny_config
from tests.transformers_suite import import_common


ModelTesterMixin = import_common("test_modeling_common").ModelTesterMixin
ALL_MODEL_CLASSES = (AVFMAEModel, AVFMAEForVideoClassification, AVFMAEForPreTraining)


class AVFMAEModelTester:
    """Tiny models and the shapes they must produce (hidden 32, 2 layers, 8 regions per tower); also the model
    tester of transformers' `ModelTesterMixin`."""

    def __init__(self, parent=None, batch_size: int = 2, **overrides):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = True
        self.config = tiny_config(**overrides)
        self.inputs = random_inputs(self.config, batch_size=batch_size)
        self.num_hidden_layers = self.config.video_config.num_hidden_layers
        self.hidden_size = self.config.hidden_size

    def get_config(self) -> AVFMAEConfig:
        return copy.deepcopy(self.config)

    def prepare_config_and_inputs_for_common(self):
        return self.get_config(), {name: value.clone() for name, value in self.inputs.items()}

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
        return outputs

    def create_and_check_for_video_classification(self):
        model = AVFMAEForVideoClassification(self.config).eval()
        outputs = model(**self.inputs, labels=torch.tensor([1, 3]))
        assert outputs.logits.shape == (2, 5)
        assert outputs.loss.ndim == 0
        return outputs


@pytest.mark.slow
class AVFMAEModelTest(ModelTesterMixin, unittest.TestCase):
    """transformers' common model tests on the three AVF-MAE++ classes.

    Every exception is listed here, with its reason.
    """

    # --- exceptions -------------------------------------------------------------------------------------------
    # no token vocabulary: the input embeddings are patch embeddings (Conv3d / Conv2d), nothing to resize
    test_resize_embeddings = False

    @unittest.skip(reason="no token embeddings: get_input_embeddings is the video patch embedding, not nn.Embedding")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="hidden states come per tower (video_hidden_states / audio_hidden_states), not as one tuple")
    def test_hidden_states_output(self):
        pass

    @unittest.skip(
        reason="hidden states come per tower, and attentions are the mixed tuple (see test_attention_outputs)"
    )
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(
        reason="the mixed attention tuple: per local-global layer local, region, region-to-local and local-to-region "
        "maps of different shapes, for both towers, then the fusion's, not one (heads, seq, seq) map per layer"
    )
    def test_attention_outputs(self):
        pass

    # Mixin tests that run on some classes only: the classes left out, and why.
    CLASSES_LEFT_OUT = {
        # the mixin knows base models only from transformers' own model tables, which a Hub model is not in, and
        # asks them for a loss; the backbone has none (the heads' training is tested)
        "test_training": (AVFMAEModel,),
        "test_training_gradient_checkpointing": (AVFMAEModel,),
        # outside classification heads it compares `outputs.hidden_states[-1]`; hidden states come per tower
        "test_eager_matches_sdpa_inference": (AVFMAEModel, AVFMAEForPreTraining),
        # the pretraining output carries its boolean masks, which the mixin compares by float subtraction
        "test_model_outputs_equivalence": (AVFMAEForPreTraining,),
    }
    # ------------------------------------------------------------------------------------------------------------

    _is_composite = True  # a video and an audio sub-config
    additional_model_inputs = ["audio_values"]

    @property
    def all_model_classes(self):
        left_out = next(
            (classes for name, classes in self.CLASSES_LEFT_OUT.items() if self._testMethodName.startswith(name)), ()
        )
        return tuple(model_class for model_class in ALL_MODEL_CLASSES if model_class not in left_out)

    def setUp(self):
        self.model_tester = AVFMAEModelTester(self)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        batch_size = inputs_dict["pixel_values"].shape[0]
        if model_class is AVFMAEForPreTraining:
            # fixed masks, so that two forwards of the same inputs are comparable (as VideoMAE's tests pass
            # bool_masked_pos)
            masks = AVFMAEDualMaskingGenerator(self.model_tester.config)(
                batch_size, generator=torch.Generator().manual_seed(0)
            )
            inputs_dict.update(
                {name: mask.to(inputs_dict["pixel_values"].device) for name, mask in vars(masks).items()}
            )
        if return_labels and model_class is AVFMAEForVideoClassification:
            inputs_dict["labels"] = torch.zeros(
                batch_size, dtype=torch.long, device=inputs_dict["pixel_values"].device
            )
        return inputs_dict


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
    # Architecture notes: the masked path reads the local tokens of the last encoder layer, not its region tokens,
    # so that layer's local-to-region step is outside the graph (gradient exactly zero). Other parameters cannot
    # change the loss either, and get zero or round-off gradients (below 1e-5; the smallest learning gradient is about
    # 1e-4): with one overall token the fusion's overall attention is a softmax over one key, so its query and key
    # sides do nothing, and the refinement convolutions' biases are removed again by the BatchNorm that follows
    # them (batch statistics in training). Everything else must learn.
    torch.manual_seed(0)
    model = AVFMAEForPreTraining(tester.config).train()
    model(**tester.inputs, generator=torch.Generator().manual_seed(0)).loss.backward()
    largest_gradient = {
        name: 0.0 if p.grad is None else p.grad.abs().max().item() for name, p in model.named_parameters()
    }
    outside_the_graph = {
        f"avfmae.{tower}_encoder.layers.1.local_to_region_{part}"
        for tower in ("video", "audio")
        for part in (
            "attention_norm.weight",
            "attention_norm.bias",
            "context_norm.weight",
            "context_norm.bias",
            "attention.q_proj.weight",
            "attention.q_proj.bias",
            "attention.k_proj.weight",
            "attention.v_proj.weight",
            "attention.v_proj.bias",
            "attention.o_proj.weight",
            "attention.o_proj.bias",
        )
    }
    without_effect = {
        "avfmae.fusion.overall_attention.q_proj.weight",
        "avfmae.fusion.overall_attention.q_proj.bias",
        "avfmae.fusion.overall_attention.k_proj.weight",
        *(f"avfmae.fusion.{m}_overall_norm.{p}" for m in ("video", "audio") for p in ("weight", "bias")),
        *(f"avfmae.fusion.refinement.{m}_projection.conv.bias" for m in ("video", "audio")),
    }
    assert {name: largest_gradient[name] for name in outside_the_graph} == dict.fromkeys(outside_the_graph, 0.0)
    assert all(largest_gradient[name] < 1e-5 for name in without_effect), without_effect
    learning = set(largest_gradient) - outside_the_graph - without_effect
    assert [name for name in learning if not largest_gradient[name] > 1e-5] == []


def test_drop_path_is_active_only_in_training():
    config = tiny_config(drop_path_rate=0.5)
    inputs = random_inputs(config, batch_size=2)
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
    outputs = model(**random_inputs(config, batch_size=2), labels=labels)
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
    outputs = model(random_inputs(config, batch_size=2)["pixel_values"], output_hidden_states=True)
    assert outputs.logits.shape == (2, 5)
    assert outputs.pooler_output.shape == (2, 32)
    # the pooled feature is the mean of the last layer's normalised region tokens
    backbone = model.avfmae(random_inputs(config, batch_size=2)["pixel_values"])
    torch.testing.assert_close(backbone.pooler_output, outputs.video_hidden_states[-1].mean(1))
    with pytest.raises(ValueError, match="video-only"):
        model(**random_inputs(tiny_config(), batch_size=2))
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
            reloaded.base_model.video_embeddings.position_embeddings, sinusoid_position_table(128, 32), atol=0, rtol=0
        )
        assert "position_embeddings" not in " ".join(reloaded.state_dict())


def test_pretraining_weights_hand_off_to_classification(tmp_path, tester):
    pretraining = AVFMAEForPreTraining(tester.config)
    pretraining.save_pretrained(tmp_path)
    classifier = AVFMAEForVideoClassification.from_pretrained(tmp_path, num_labels=3)
    assert classifier.config.num_labels == 3
    source, target = pretraining.state_dict(), classifier.state_dict()
    head = {"fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}
    layer_weights = {"avfmae.video_layer_weights", "avfmae.audio_layer_weights"}
    # everything but the head and the layer weights comes from pretraining; the decoders stay behind
    assert set(target) - set(source) == head | layer_weights
    assert set(source) - set(target) == {key for key in source if not key.startswith("avfmae.")}
    for key in set(target) & set(source):
        assert torch.equal(target[key], source[key]), key
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


def test_pretraining_loss_weights_the_contrastive_term_by_the_config():
    # official tiny fixture: loss_total = loss_video + loss_audio + 0.0025 * loss_hcmcl (the official loss_weight)
    model, inputs, expected = build("tiny_pretrain", AVFMAEForPreTraining, "sdpa")
    torch.testing.assert_close(
        expected["loss_total"], expected["loss_video"] + expected["loss_audio"] + 0.0025 * expected["loss_hcmcl"]
    )
    model.config.contrastive_loss_weight = 0.5
    masks = {
        "video_bool_masked_pos": inputs["mask"],
        "audio_bool_masked_pos": inputs["mask_audio"],
        "video_decoder_bool_masked_pos": inputs["decode_mask"],
        "audio_decoder_bool_masked_pos": inputs["decode_mask_audio"],
    }
    with torch.no_grad():
        outputs = model(inputs["video"].permute(0, 2, 1, 3, 4), inputs["audio"], **masks)
    official_sum = expected["loss_video"] + expected["loss_audio"] + 0.5 * expected["loss_hcmcl"]
    torch.testing.assert_close(outputs.loss, official_sum, atol=1e-5, rtol=1e-5)


MIXED_ATTENTION = {"video_config": "eager", "audio_config": "sdpa", "": "eager"}


def attention_names_by_part(model) -> dict[str, set[str]]:
    """Names of the attention modules of the video tower, the audio tower (encoders and decoders) and the fusion."""
    names = {"video": set(), "audio": set(), "fusion": set()}
    for name, module in model.named_modules():
        if type(module).__name__ == "AVFMAEAttention":
            part = "fusion" if ".fusion." in f".{name}" else "video" if "video_" in name else "audio"
            names[part].add(name)
    return names


def record_attention_implementations(monkeypatch, model) -> dict[str, str]:
    """Patches the eager and the SDPA attention functions to note which one every attention module calls."""
    module_names = {module: name for name, module in model.named_modules()}
    used = {}

    def recording(implementation, function):
        def attention(module, *args, **kwargs):
            used[module_names[module]] = implementation
            return function(module, *args, **kwargs)

        return attention

    monkeypatch.setattr(modeling, "eager_attention_forward", recording("eager", modeling.eager_attention_forward))
    monkeypatch.setitem(
        ALL_ATTENTION_FUNCTIONS._local_mapping, "sdpa", recording("sdpa", ALL_ATTENTION_FUNCTIONS["sdpa"])
    )
    return used


def test_each_tower_runs_the_attention_implementation_asked_for(monkeypatch, tester):
    model = AVFMAEForPreTraining._from_config(tester.config, attn_implementation=MIXED_ATTENTION).eval()
    config = model.config
    assert (config._attn_implementation, config.video_config._attn_implementation) == ("eager", "eager")
    assert config.audio_config._attn_implementation == "sdpa"
    used = record_attention_implementations(monkeypatch, model)
    with torch.no_grad():
        model(**tester.inputs, generator=torch.Generator().manual_seed(0))
    parts = attention_names_by_part(model)
    # every attention module ran except those whose result the masked path never reads: the last encoder layer's
    # local-to-region attentions and the fusion's overall attention over a single overall token
    skipped = {f"avfmae.{tower}_encoder.layers.1.local_to_region_attention" for tower in ("video", "audio")}
    assert set().union(*parts.values()) - set(used) == skipped | {"avfmae.fusion.overall_attention"}
    # the decoders belong to their tower
    assert any(name.startswith("video_decoder") for name in parts["video"])
    assert {used[name] for name in parts["video"] & set(used)} == {"eager"}
    assert {used[name] for name in parts["audio"] & set(used)} == {"sdpa"}
    assert {used[name] for name in parts["fusion"] & set(used)} == {"eager"}

    model.set_attn_implementation({"video_config": "sdpa", "audio_config": "eager", "": "sdpa"})
    used.clear()
    with torch.no_grad():
        model(**tester.inputs, generator=torch.Generator().manual_seed(0))
    assert {used[name] for name in parts["video"] & set(used)} == {"sdpa"}
    assert {used[name] for name in parts["audio"] & set(used)} == {"eager"}
    assert {used[name] for name in parts["fusion"] & set(used)} == {"sdpa"}


def test_a_tower_without_its_own_choice_follows_the_top_level_one(tester):
    model = AVFMAEModel._from_config(tester.config, attn_implementation={"video_config": "eager"})
    assert model.config.video_config._attn_implementation == "eager"
    assert model.config.audio_config._attn_implementation == model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match='"nope"` is not supported'):
        model.set_attn_implementation({"audio_config": "nope"})
    with pytest.raises(ValueError, match='"nope"` is not supported'):
        AVFMAEModel._from_config(tiny_config(), attn_implementation={"video_config": "nope"})
    default = AVFMAEModel(tiny_config())
    assert default.config.video_config._attn_implementation == default.config.audio_config._attn_implementation
    assert default.config.video_config._attn_implementation == "sdpa"


def test_mixed_attention_matches_eager_and_returns_maps_of_eager_parts_only(tester):
    torch.manual_seed(0)
    # `_from_config` sets the implementation on the config it is given, so each model gets its own
    eager = AVFMAEForVideoClassification._from_config(copy.deepcopy(tester.config), attn_implementation="eager")
    mixed = AVFMAEForVideoClassification._from_config(
        copy.deepcopy(tester.config), attn_implementation={"video_config": "eager", "audio_config": "sdpa", "": "sdpa"}
    )
    eager.eval()
    mixed.eval()
    mixed.load_state_dict(eager.state_dict())
    with torch.no_grad():
        reference = eager(**tester.inputs, output_attentions=True)
        outputs = mixed(**tester.inputs, output_attentions=True)
    torch.testing.assert_close(outputs.logits, reference.logits, atol=1e-5, rtol=1e-5)
    # eager everywhere: 2 towers x 2 layers x 4 maps + fusion 2 layers x 2 branches x 2 + 2 aggregations + 2 reads
    assert len(reference.attentions) == 2 * 8 + 8 + 2 + 2
    # only the video tower is eager: its 2 layers x 4 maps, the same as the all-eager model's first eight
    assert len(outputs.attentions) == 8
    for mixed_map, eager_map in zip(outputs.attentions, reference.attentions[:8], strict=True):
        torch.testing.assert_close(mixed_map, eager_map, atol=1e-5, rtol=1e-5)
    assert outputs.attentions[0].shape == (2 * 8, 4, 17, 17)  # video local attention (B * R, heads, 1 + K, 1 + K)


def test_input_embeddings_are_the_video_patch_embedding(tester):
    model = AVFMAEForVideoClassification(tester.config)
    assert model.get_input_embeddings() is model.avfmae.video_embeddings
    assert model.avfmae.get_input_embeddings() is model.avfmae.video_embeddings
    assert model.tower_embeddings() == [model.avfmae.video_embeddings, model.avfmae.audio_embeddings]
    replacement = copy.deepcopy(model.avfmae.video_embeddings)
    model.set_input_embeddings(replacement)
    assert model.avfmae.video_embeddings is replacement
    video_only = AVFMAEForVideoClassification(tiny_config(use_audio=False))
    assert video_only.tower_embeddings() == [video_only.avfmae.video_embeddings]


def adapter_gradients(model, inputs) -> dict[str, torch.Tensor | None]:
    """Freezes everything but one q projection in the first layer of each tower (the "adapters"), runs a backward
    pass with reentrant gradient checkpointing and returns the adapters' gradients."""
    adapters = {
        tower: getattr(model.avfmae, f"{tower}_encoder").layers[0].local_attention.q_proj.weight
        for tower in ("video", "audio")
    }
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in adapters.values():
        parameter.requires_grad_(True)
        parameter.grad = None
    loss = model(**inputs, labels=torch.tensor([0, 1])).loss
    # when no checkpointed layer's input needs a gradient, nothing in the graph does
    if loss.requires_grad:
        loss.backward()
    return {tower: parameter.grad for tower, parameter in adapters.items()}


def test_enable_input_require_grads_lets_adapters_in_checkpointed_frozen_layers_learn(tester):
    model = AVFMAEForVideoClassification(tester.config).train()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    # without the hooks, reentrant checkpointing of layers whose inputs need no gradient drops the adapters' grads
    assert adapter_gradients(model, tester.inputs) == {"video": None, "audio": None}
    model.enable_input_require_grads()
    assert len(model._require_grads_hooks) == 2
    gradients = adapter_gradients(model, tester.inputs)
    assert all(gradient is not None and gradient.abs().sum() > 0 for gradient in gradients.values()), gradients
    model.disable_input_require_grads()
    assert adapter_gradients(model, tester.inputs) == {"video": None, "audio": None}


@pytest.mark.slow
def test_lora_fine_tuning_with_gradient_checkpointing(tmp_path, tester):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(tester.config)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    # The fusion's refinement BatchNorms update their running statistics in training; PEFT saves a module's buffers
    # only when it is in modules_to_save, so they go there beside the new classifier.
    lora = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        modules_to_save=["classifier", "batch_norm"],
    )
    peft_model = peft.get_peft_model(model, lora).train()
    assert len(model._require_grads_hooks) == 2  # PEFT called enable_input_require_grads
    before = {name: parameter.detach().clone() for name, parameter in peft_model.named_parameters()}
    trainable = [parameter for parameter in peft_model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    labels = torch.tensor([1, 3])
    losses = []
    for _ in range(4):
        loss = peft_model(**tester.inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses

    changed = {name for name, parameter in peft_model.named_parameters() if not torch.equal(parameter, before[name])}
    # only adapters and the trainable copies of modules_to_save change; the adapter of every attention of both
    # towers and the fusion learns
    assert all("lora_" in name or ".modules_to_save." in name for name in changed), changed
    assert {"base_model.model.classifier.modules_to_save.default.weight"} <= changed
    num_attentions = sum(type(m).__name__ == "AVFMAEAttention" for m in model.modules())
    assert sum("lora_B" in name for name in changed) == 4 * num_attentions

    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**tester.inputs).logits
    peft_model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    # the frozen base weights are those of the same seed; the adapter file carries the rest
    torch.manual_seed(0)
    fresh = AVFMAEForVideoClassification(tester.config)
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**tester.inputs).logits, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_classification_model_exports_with_torch_export(tester):
    model = AVFMAEForVideoClassification(tester.config).eval()
    exported = torch.export.export(model, args=(), kwargs=tester.inputs, strict=False)
    other_inputs = random_inputs(tester.config, batch_size=2, seed=1)
    with torch.no_grad():
        expected = model(**other_inputs).logits
    torch.testing.assert_close(exported.module()(**other_inputs).logits, expected, atol=1e-5, rtol=1e-5)


def test_video_classification_pipeline_runs_on_a_saved_video_only_classifier(tmp_path):
    config = tiny_config(use_audio=False, id2label={0: "calm", 1: "happy"})
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(config).eval()
    processor = AVFMAEVideoProcessor(size={"height": 16, "width": 16}, do_face_crop=False)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    video = write_video(tmp_path / "clip.mp4", index_frames(40))

    # the pipeline finds the saved video processor in the folder itself
    classifier = pipeline("video-classification", model=str(tmp_path))
    results = classifier(video)

    # the pipeline reads config.num_frames and asks the video processor for that many sampled frames
    with torch.no_grad():
        inputs = processor(video, num_frames=config.num_frames, do_sample_frames=True, return_tensors="pt")
        probabilities = model(**inputs).logits.softmax(-1)[0]
    assert inputs["pixel_values"].shape[1] == config.num_frames == 16
    expected_labels = [config.id2label[i] for i in probabilities.argsort(descending=True).tolist()]
    assert [result["label"] for result in results] == expected_labels
    torch.testing.assert_close(
        torch.tensor([result["score"] for result in results]), probabilities.sort(descending=True).values
    )
