"""Work whose result nobody reads is skipped, and work that can be done on fewer tokens is moved there; neither
changes anything that is returned.

Skipped: the last encoder layer's local-to-region attention and the region tokens' MLP in pretraining (only local
tokens are read), the last layer's MLP on the local tokens without masks (only region tokens are read), the query
side of the fusion's final cross-attention when it reads a single overall token (pretraining), the queries and MLP of
the visible tokens in each decoder's last layer (the head reads the decoded tokens only), and the patch embeddings
and reconstruction targets of tokens nobody reads (pretraining embeds only the visible tokens and normalises only the
decoded tokens' targets). Folded: the
projections of the long side of a cross-attention between many and few tokens (local tokens and region tokens) are
applied to the few tokens instead. The full computation runs when attention weights are requested or a forward hook
watches a layer, which gives the reference here. The comparisons run in float64, where a different order of the
same sums leaves differences of about 1e-15, so that any real change of the computation would show.
"""

import pytest
import torch
from torch import nn

from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining, AVFMAEForVideoClassification
from avfmae_hf.checkpoint_avfmae import random_inputs, reference_outputs
from avfmae_hf.modeling_avfmae import AVFMAEAttention
from tests.test_parity_official import TOLERANCE, build
from tests.tiny_configs import tiny_config


class CallCounter:
    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.calls = dict.fromkeys(modules, 0)
        self.input_shapes = {name: [] for name in modules}
        self.handles = [module.register_forward_hook(self.hook(name)) for name, module in modules.items()]

    def hook(self, name):
        def count(_, args, output):
            self.calls[name] += 1
            self.input_shapes[name].append(tuple(args[0].shape))

        return count

    def close(self):
        for handle in self.handles:
            handle.remove()


FLOAT64_TOLERANCE = {"atol": 1e-10, "rtol": 1e-9}


def float64_model_and_inputs(model_class, config):
    torch.manual_seed(0)
    model = model_class(config).train().double()
    inputs = {name: value.double() for name, value in random_inputs(config, batch_size=2).items()}
    return model, inputs


def run(model, inputs, labels, full: bool, seed: int):
    """One train step's outputs and gradients; `full` asks for the attention weights, which computes everything."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # drop-path draws
    if isinstance(model, AVFMAEForPreTraining):
        outputs = model(**inputs, generator=torch.Generator().manual_seed(seed), output_attentions=full)
    else:
        outputs = model(**inputs, labels=labels, output_attentions=full)
    outputs.loss.backward()
    gradients = {name: parameter.grad for name, parameter in model.named_parameters()}
    returned = {name: value for name, value in outputs.items() if name != "attentions"}
    return returned, gradients


def assert_same(skipped, full):
    assert skipped.keys() == full.keys()
    for name, value in full.items():
        if isinstance(value, tuple):
            assert len(skipped[name]) == len(value), name
            for index, item in enumerate(value):
                torch.testing.assert_close(skipped[name][index], item, **FLOAT64_TOLERANCE, msg=f"{name}[{index}]")
        elif value is None:
            assert skipped[name] is None, name
        else:
            torch.testing.assert_close(skipped[name], value, **FLOAT64_TOLERANCE, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("drop_path_rate", [0.0, 0.2])
def test_pretraining_skips_unread_branches_without_changing_outputs_or_gradients(drop_path_rate):
    config = tiny_config(drop_path_rate=drop_path_rate)
    config._attn_implementation = "eager"
    model, inputs = float64_model_and_inputs(AVFMAEForPreTraining, config)
    backbone = model.avfmae
    last_layers = {"video": backbone.video_encoder.layers[-1], "audio": backbone.audio_encoder.layers[-1]}
    watched = {f"{tower}.local_to_region": layer.local_to_region_attention for tower, layer in last_layers.items()}
    watched |= {f"{tower}.mlp": layer.mlp for tower, layer in last_layers.items()}
    watched["fusion.overall_attention"] = backbone.fusion.overall_attention
    watched |= {f"{tower}_decoder.mlp": getattr(model, f"{tower}_decoder").layers[-1].mlp for tower in last_layers}

    counter = CallCounter(watched)
    skipped_outputs, skipped_gradients = run(model, inputs, None, full=False, seed=3)
    skipped_calls, skipped_shapes = dict(counter.calls), {k: list(v) for k, v in counter.input_shapes.items()}
    counter.calls = dict.fromkeys(watched, 0)
    full_outputs, full_gradients = run(model, inputs, None, full=True, seed=3)
    counter.close()

    # the branches really were left out, and the full run ran them
    assert skipped_calls["video.local_to_region"] == skipped_calls["audio.local_to_region"] == 0
    assert skipped_calls["fusion.overall_attention"] == 0
    assert counter.calls["video.local_to_region"] == 1 and counter.calls["fusion.overall_attention"] == 2
    # the last layer's MLP saw only the local tokens: (B * R, K, C) instead of (B * R, 1 + K, C)
    assert skipped_shapes["video.mlp"][0][1] + 1 == counter.input_shapes["video.mlp"][-1][1]
    # the last decoder layer's MLP saw only the decoded tokens the head reads, not the visible ones before them
    for tower in last_layers:
        num_decoded = skipped_outputs[f"{tower}_logits"].shape[1]
        num_visible = int((~skipped_outputs[f"{tower}_bool_masked_pos"][0]).sum())
        assert skipped_shapes[f"{tower}_decoder.mlp"] == [(2, num_decoded, config.video_config.decoder_hidden_size)]
        assert counter.input_shapes[f"{tower}_decoder.mlp"][-1][1] == num_visible + num_decoded

    assert_same(skipped_outputs, full_outputs)
    assert skipped_gradients.keys() == full_gradients.keys()
    for name, gradient in full_gradients.items():
        assert (skipped_gradients[name] is None) == (gradient is None), name
        if gradient is not None:
            torch.testing.assert_close(skipped_gradients[name], gradient, **FLOAT64_TOLERANCE, msg=name)
    # the skipped parameters get exact zeros (as in the full computation), not a missing gradient
    for name in (
        "avfmae.video_encoder.layers.1.local_to_region_attention.q_proj.weight",
        "avfmae.audio_encoder.layers.1.local_to_region_context_norm.weight",
        "avfmae.fusion.overall_attention.q_proj.weight",
        "avfmae.fusion.overall_attention.k_proj.weight",
        "avfmae.fusion.video_overall_norm.bias",
    ):
        assert skipped_gradients[name] is not None and not skipped_gradients[name].any(), name


@pytest.mark.slow
@pytest.mark.parametrize("drop_path_rate", [0.0, 0.2])
def test_classification_skips_the_last_local_mlp_without_changing_outputs_or_gradients(drop_path_rate):
    config = tiny_config(drop_path_rate=drop_path_rate)
    config._attn_implementation = "eager"
    model, inputs = float64_model_and_inputs(AVFMAEForVideoClassification, config)
    labels = torch.tensor([1, 3])
    last_mlp = model.avfmae.video_encoder.layers[-1].mlp
    counter = CallCounter({"mlp": last_mlp, "overall_attention": model.avfmae.fusion.overall_attention})
    skipped_outputs, skipped_gradients = run(model, inputs, labels, full=False, seed=5)
    skipped_shape = counter.input_shapes["mlp"][0]
    full_outputs, full_gradients = run(model, inputs, labels, full=True, seed=5)
    counter.close()

    batch_size, num_regions = 2, config.video_config.num_regions
    assert skipped_shape[:2] == (batch_size * num_regions, 1)  # region tokens only
    assert counter.input_shapes["mlp"][1][1] > 1
    assert counter.calls["overall_attention"] == 4  # several overall tokens: the full cross-attention, both runs
    assert_same(skipped_outputs, full_outputs)
    for name, gradient in full_gradients.items():
        assert (skipped_gradients[name] is None) == (gradient is None), name
        if gradient is not None:
            torch.testing.assert_close(skipped_gradients[name], gradient, **FLOAT64_TOLERANCE, msg=name)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize(
    "fixture, model_class", [("tiny_pretrain", AVFMAEForPreTraining), ("tiny_finetune", AVFMAEForVideoClassification)]
)
def test_outputs_with_skipped_branches_match_the_official_tensors(fixture, model_class, attn_implementation):
    # no hook on any layer, so the skipping path runs (test_parity_official.py watches every layer: the full path)
    model, inputs, expected = build(fixture, model_class, attn_implementation)
    actual = reference_outputs(model, inputs)
    assert set(actual) <= set(expected)
    for name, value in actual.items():
        torch.testing.assert_close(
            value.float(), expected[name].float(), **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}"
        )


# --------------------------------------------------------------------------------------------------------------------
# Folded cross-attention projections
# --------------------------------------------------------------------------------------------------------------------


def test_the_encoder_cross_attentions_fold_their_long_side_at_base_size():
    """What each cross-attention of a base-size model computes, by the cost model the attention uses."""
    config = AVFMAEConfig.from_size("base")
    for tower in (config.video_config, config.audio_config):
        attention = AVFMAEAttention(tower, tower.hidden_size, tower.num_attention_heads)
        num_regions = tower.num_regions
        for num_tokens in (
            tower.num_tokens,
            tower.num_visible_tokens,
        ):  # fine-tuning grid, pretraining's visible tokens
            # region-to-local: every local token reads the region tokens
            assert attention.cheaper_folded_side(num_tokens, num_regions) == "query"
            # local-to-region: the region tokens read every local token
            assert attention.cheaper_folded_side(num_regions, num_tokens) == "context"
        # two sequences of similar length: the usual computation
        assert attention.cheaper_folded_side(tower.num_tokens, tower.num_tokens) is None
        assert attention.cheaper_folded_side(num_regions, num_regions) is None


def _attention_step(attention, queries, context, watch: bool):
    handle = attention.register_forward_hook(lambda *_: None) if watch else None  # a hook: the usual computation
    attention.zero_grad(set_to_none=True)
    queries.grad = context.grad = None
    output, _ = attention(queries, context=context)
    (output * torch.linspace(-1, 1, output.numel(), dtype=output.dtype).view_as(output)).sum().backward()
    if handle is not None:
        handle.remove()
    gradients = {name: parameter.grad for name, parameter in attention.named_parameters()}
    return output.detach(), gradients, queries.grad, context.grad


@pytest.mark.parametrize("num_queries, num_keys, expected_side", [(300, 4, "query"), (4, 300, "context")])
def test_folded_cross_attention_equals_the_usual_one_with_its_gradients(num_queries, num_keys, expected_side):
    torch.manual_seed(0)
    config = AVFMAEConfig.from_size("base").video_config
    config._attn_implementation = "eager"
    attention = AVFMAEAttention(config, 96, 4, context_size=80).double()
    for projection in (attention.q_proj, attention.v_proj, attention.o_proj):
        nn.init.normal_(projection.bias)  # the biases' part of the folded formulas is checked too
    assert attention.cheaper_folded_side(num_queries, num_keys) == expected_side
    queries = torch.randn(2, num_queries, 96, dtype=torch.float64, requires_grad=True)
    context = torch.randn(2, num_keys, 80, dtype=torch.float64, requires_grad=True)

    folded = _attention_step(attention, queries, context, watch=False)
    usual = _attention_step(attention, queries, context, watch=True)
    torch.testing.assert_close(folded[0], usual[0], **FLOAT64_TOLERANCE)
    for name, gradient in usual[1].items():
        if gradient is None:  # the key projection has no bias
            continue
        torch.testing.assert_close(folded[1][name], gradient, **FLOAT64_TOLERANCE, msg=name)
    torch.testing.assert_close(folded[2], usual[2], **FLOAT64_TOLERANCE)
    torch.testing.assert_close(folded[3], usual[3], **FLOAT64_TOLERANCE)


def test_adapted_or_watched_projections_are_not_folded():
    config = AVFMAEConfig.from_size("base").video_config
    attention = AVFMAEAttention(config, 96, 4)
    assert attention.can_fold_projections()

    class AdaptedLinear(nn.Linear):  # what an adapter library puts in place of a projection
        pass

    attention.q_proj = AdaptedLinear(96, 96)
    assert not attention.can_fold_projections()
    attention.q_proj = nn.Linear(96, 96)
    handle = attention.v_proj.register_forward_hook(lambda *_: None)
    assert not attention.can_fold_projections()
    handle.remove()
    assert attention.can_fold_projections()


def test_patch_embeddings_and_pointwise_convolutions_computed_as_matrix_products_equal_the_convolutions():
    """The patch embeddings (kernel = stride) and the refinement's pointwise convolution run as matrix products
    unless a hook watches the convolution; both ways give the same values and gradients."""
    config = tiny_config()
    model, inputs = float64_model_and_inputs(AVFMAEForVideoClassification, config)
    backbone = model.avfmae
    convolutions = [
        backbone.video_embeddings.projection,
        backbone.audio_embeddings.projection,
        backbone.fusion.refinement.video_projection.conv,
    ]

    def step(watch: bool):
        handles = [conv.register_forward_hook(lambda *_: None) for conv in convolutions] if watch else []
        model.zero_grad(set_to_none=True)
        video = backbone.video_embeddings(inputs["pixel_values"])
        audio = backbone.audio_embeddings(inputs["audio_values"])
        refined = backbone.fusion.refinement.video_projection(video[:, :5])
        weights = [
            torch.linspace(-1, 1, tensor.numel(), dtype=tensor.dtype).view_as(tensor)
            for tensor in (video, audio, refined)
        ]
        sum(
            (tensor * weight).sum() for tensor, weight in zip((video, audio, refined), weights, strict=True)
        ).backward()
        for handle in handles:
            handle.remove()
        return [video.detach(), audio.detach(), refined.detach()], [
            p.grad.clone() for conv in convolutions for p in conv.parameters()
        ]

    as_products, product_gradients = step(watch=False)
    as_convolutions, convolution_gradients = step(watch=True)
    for actual, expected in zip(as_products + product_gradients, as_convolutions + convolution_gradients, strict=True):
        torch.testing.assert_close(actual, expected, **FLOAT64_TOLERANCE)


def test_pretraining_embeds_only_the_visible_tokens_and_normalises_only_the_decoded_targets():
    """The embeddings of the visible tokens alone, and the targets of the decoded tokens alone, are the rows the full
    computations give there (values and gradients; also through the convolution a hook watches), and the model's
    forward embeds no more tokens than are visible."""
    config = tiny_config()
    model, inputs = float64_model_and_inputs(AVFMAEForPreTraining, config)
    backbone = model.avfmae
    masks = model.masking(2, generator=torch.Generator().manual_seed(0))
    for tower, values in (("video", inputs["pixel_values"]), ("audio", inputs["audio_values"])):
        embeddings = getattr(backbone, f"{tower}_embeddings")
        keep = ~getattr(masks, f"{tower}_bool_masked_pos")
        weight = torch.linspace(-1, 1, int(keep[0].sum()) * embeddings.config.hidden_size, dtype=torch.float64)
        results = []
        for watch in (False, True):
            handle = embeddings.projection.register_forward_hook(lambda *_: None) if watch else None
            model.zero_grad(set_to_none=True)
            full = embeddings(values)[keep].view(2, -1, embeddings.config.hidden_size)
            kept = embeddings(values, keep=keep)
            (kept * weight.view(1, *kept.shape[1:])).sum().backward()
            gradients = [parameter.grad.clone() for parameter in embeddings.parameters()]
            model.zero_grad(set_to_none=True)
            (full * weight.view(1, *full.shape[1:])).sum().backward()
            full_gradients = [parameter.grad.clone() for parameter in embeddings.parameters()]
            for actual, expected in zip([kept, *gradients], [full, *full_gradients], strict=True):
                torch.testing.assert_close(actual, expected, **FLOAT64_TOLERANCE)
            results.append(kept.detach())
            if handle is not None:
                handle.remove()
        torch.testing.assert_close(results[0], results[1], **FLOAT64_TOLERANCE)

        targets = getattr(model, f"{tower}_targets")
        decoded = ~getattr(masks, f"{tower}_decoder_bool_masked_pos")
        full_targets = targets(values)
        torch.testing.assert_close(
            targets(values, keep=decoded), full_targets[decoded].view(2, -1, full_targets.shape[-1]), rtol=0, atol=0
        )

    # the forward projects the visible tubelets only: one product with the patch values as inputs
    patch_values = backbone.video_embeddings.projection.weight[0].numel()
    shapes = []
    linear = torch.nn.functional.linear

    def recording_linear(input, weight, bias=None):
        shapes.append(tuple(input.shape))
        return linear(input, weight, bias)

    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "linear", recording_linear)
        model(**inputs, **vars(masks))
    num_visible = int((~masks.video_bool_masked_pos[0]).sum())
    assert [shape for shape in shapes if shape[-1] == patch_values] == [(2, num_visible, patch_values)]
