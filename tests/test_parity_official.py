"""The port against tensors produced by the official AVF-MAE++ implementation (tests/fixtures/official/README.md)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avfmae_hf import AVFMAEForPreTraining, AVFMAEForVideoClassification, convert_original_state_dict
from avfmae_hf.checkpoint_avfmae import reference_outputs
from avfmae_hf.original_config_avfmae import config_from_original


OFFICIAL = Path(__file__).parent / "fixtures" / "official"
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def build(fixture: str, model_class, attn_implementation: str):
    description = json.loads((OFFICIAL / fixture / "config.json").read_text())
    config = config_from_original(description["constructor_kwargs"])
    config._attn_implementation = attn_implementation
    model = model_class(config).eval()
    state_dict = convert_original_state_dict(load_file(OFFICIAL / fixture / "state_dict.safetensors"), config)
    model.load_state_dict(state_dict, strict=True)
    return (
        model,
        load_file(OFFICIAL / fixture / "inputs.safetensors"),
        load_file(OFFICIAL / fixture / "outputs.safetensors"),
    )


class Recorder:
    """Keeps the outputs (and inputs) of chosen submodules during one forward."""

    def __init__(self):
        self.outputs, self.inputs, self.handles = {}, {}, []

    def watch(self, name: str, module: torch.nn.Module):
        def hook(_, args, output):
            self.inputs[name], self.outputs[name] = args, output

        self.handles.append(module.register_forward_hook(hook))

    def close(self):
        for handle in self.handles:
            handle.remove()


def watch_encoders(recorder: Recorder, backbone):
    for prefix, encoder in (("encoder", backbone.video_encoder), ("encoder_audio", backbone.audio_encoder)):
        for index, layer in enumerate(encoder.layers):
            recorder.watch(f"block_out.{prefix}.blocks.{index}", layer)
    recorder.watch("fusion", backbone.fusion)


def assert_matches(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]):
    assert sorted(actual) == sorted(expected), "every fixture tensor must be compared"
    for name, value in expected.items():
        assert actual[name].shape == value.shape, name
        torch.testing.assert_close(actual[name].float(), value.float(), **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_pretraining_reproduces_every_official_tensor(attn_implementation):
    model, inputs, expected = build("tiny_pretrain", AVFMAEForPreTraining, attn_implementation)
    recorder = Recorder()
    watch_encoders(recorder, model.avfmae)
    for prefix, decoder in (("decoder", model.video_decoder), ("decoder_audio", model.audio_decoder)):
        for index, layer in enumerate(decoder.layers):
            recorder.watch(f"block_out.{prefix}.blocks.{index}", layer)
    for index, layer in enumerate(model.avfmae.fusion.layers):
        recorder.watch(f"fusion.stage.{index}", layer)
    actual = reference_outputs(model, inputs)  # the forward's outputs under the official names
    recorder.close()

    # internals recorded by the hooks during that forward
    actual["fusion.in.overall_feat"] = recorder.inputs["fusion"][2]
    for name, output in recorder.outputs.items():
        if name.startswith("block_out.encoder"):
            actual[name] = output.flatten(0, 1)  # official (B * R, 1 + K, C)
        elif name.startswith("block_out.decoder"):
            actual[name] = output
        elif name.startswith("fusion.stage"):
            actual[f"{name}.video"], actual[f"{name}.audio"] = output
    assert_matches(expected, actual)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_classification_reproduces_every_official_tensor(attn_implementation):
    model, inputs, expected = build("tiny_finetune", AVFMAEForVideoClassification, attn_implementation)
    recorder = Recorder()
    watch_encoders(recorder, model.avfmae)
    actual = reference_outputs(model, inputs)
    recorder.close()
    fusion_in = recorder.inputs["fusion"]
    actual["fusion.in.video"], actual["fusion.in.audio"], actual["fusion.in.overall_feat"] = fusion_in
    for name, output in recorder.outputs.items():
        if name.startswith("block_out"):
            actual[name] = output.flatten(0, 1)
    assert_matches(expected, actual)


def test_classification_backbone_outputs_are_the_fused_tokens():
    model, inputs, expected = build("tiny_finetune", AVFMAEForVideoClassification, "sdpa")
    with torch.no_grad():
        outputs = model.avfmae(inputs["video"].permute(0, 2, 1, 3, 4), inputs["audio"])
    torch.testing.assert_close(outputs.video_last_hidden_state, expected["fusion.out.video"], **TOLERANCE)
    torch.testing.assert_close(outputs.audio_last_hidden_state, expected["fusion.out.audio"], **TOLERANCE)
    torch.testing.assert_close(outputs.overall_token, expected["fusion.out.overall"], **TOLERANCE)
    pooled = torch.cat([expected["fusion.out.video"].mean(1), expected["fusion.out.audio"].mean(1)], dim=-1)
    torch.testing.assert_close(outputs.pooler_output, pooled, **TOLERANCE)
