"""Work whose result nobody reads is skipped, and skipping it changes nothing that is returned.

Skipped: the last encoder layer's local-to-region attention and the region tokens' MLP in pretraining (only local
tokens are read), the last layer's MLP on the local tokens without masks (only region tokens are read), and the query
side of the fusion's final cross-attention when it reads a single overall token (pretraining). The full computation
runs when attention weights are requested or a forward hook watches a layer, which gives the reference here.
"""

import pytest
import torch

from avfmae_hf import AVFMAEForPreTraining, AVFMAEForVideoClassification
from avfmae_hf.checkpoint_avfmae import reference_outputs
from tests.test_parity_official import TOLERANCE, build
from tests.tiny_configs import tiny_config, tiny_inputs


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
                torch.testing.assert_close(skipped[name][index], item, atol=1e-6, rtol=1e-5, msg=f"{name}[{index}]")
        elif value is None:
            assert skipped[name] is None, name
        else:
            torch.testing.assert_close(skipped[name], value, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("drop_path_rate", [0.0, 0.2])
def test_pretraining_skips_unread_branches_without_changing_outputs_or_gradients(drop_path_rate):
    config = tiny_config(drop_path_rate=drop_path_rate)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = AVFMAEForPreTraining(config).train()
    inputs = tiny_inputs(config)
    backbone = model.avfmae
    last_layers = {"video": backbone.video_encoder.layers[-1], "audio": backbone.audio_encoder.layers[-1]}
    watched = {f"{tower}.local_to_region": layer.local_to_region_attention for tower, layer in last_layers.items()}
    watched |= {f"{tower}.mlp": layer.mlp for tower, layer in last_layers.items()}
    watched["fusion.overall_attention"] = backbone.fusion.overall_attention

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

    assert_same(skipped_outputs, full_outputs)
    assert skipped_gradients.keys() == full_gradients.keys()
    for name, gradient in full_gradients.items():
        assert (skipped_gradients[name] is None) == (gradient is None), name
        if gradient is not None:
            torch.testing.assert_close(skipped_gradients[name], gradient, atol=1e-6, rtol=1e-5, msg=name)
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
    torch.manual_seed(0)
    model = AVFMAEForVideoClassification(config).train()
    inputs = tiny_inputs(config)
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
            torch.testing.assert_close(skipped_gradients[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


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
