"""The port against tensors produced by the official AVF-MAE++ implementation (tests/fixtures/official/README.md)."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining, AVFMAEForVideoClassification, convert_original_state_dict


OFFICIAL = Path(__file__).parent / "fixtures" / "official"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference"
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def build(fixture: str, model_class, attn_implementation: str):
    description = json.loads((OFFICIAL / fixture / "config.json").read_text())
    config = AVFMAEConfig.from_original(description["constructor_kwargs"])
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
    with torch.no_grad():
        outputs = model(
            inputs["video"].permute(0, 2, 1, 3, 4),  # official (B, C, T, H, W) -> ours (B, T, C, H, W)
            inputs["audio"],
            video_bool_masked_pos=inputs["mask"],
            audio_bool_masked_pos=inputs["mask_audio"],
            video_decoder_bool_masked_pos=inputs["decode_mask"],
            audio_decoder_bool_masked_pos=inputs["decode_mask_audio"],
        )
    recorder.close()

    layers = model.config.video_config.intermediate_layer_indices
    actual = {
        "recon_video": outputs.video_logits,
        "recon_audio": outputs.audio_logits,
        "target_video": outputs.video_targets,
        "target_audio": outputs.audio_targets,
        "loss_video": outputs.video_loss,
        "loss_audio": outputs.audio_loss,
        "loss_hcmcl": outputs.contrastive_loss,
        "loss_total": outputs.loss,
        "encoder.out": outputs.video_hidden_states[-1],
        "encoder_audio.out": outputs.audio_hidden_states[-1],
        "fusion.in.overall_feat": recorder.inputs["fusion"][2],
        "fusion.out.video": recorder.outputs["fusion"][0],
        "fusion.out.audio": recorder.outputs["fusion"][1],
    }
    for position, layer in enumerate(layers):
        actual[f"encoder.inter.{position}"] = outputs.video_hidden_states[layer]
        actual[f"encoder_audio.inter.{position}"] = outputs.audio_hidden_states[layer]
        actual[f"logits_per_video.{position}"] = outputs.contrastive_logits[position]
        actual[f"logits_per_audio.{position}"] = outputs.contrastive_logits[position].T
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
    with torch.no_grad():
        outputs = model(inputs["video"].permute(0, 2, 1, 3, 4), inputs["audio"], output_hidden_states=True)
    recorder.close()
    fusion_in, fusion_out = recorder.inputs["fusion"], recorder.outputs["fusion"]
    actual = {
        "logits": outputs.logits,
        "feature": outputs.pooler_output,
        "encoder.out": torch.stack(outputs.video_hidden_states, dim=2),  # official (B, R, L, C)
        "encoder_audio.out": torch.stack(outputs.audio_hidden_states, dim=2),
        "fusion.in.video": fusion_in[0],
        "fusion.in.audio": fusion_in[1],
        "fusion.in.overall_feat": fusion_in[2],
        "fusion.out.video": fusion_out[0],
        "fusion.out.audio": fusion_out[1],
        "fusion.out.overall": fusion_out[2],
    }
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


@pytest.mark.skipif(not SHARED.is_dir(), reason="only where the shared reference fixtures are checked out beside")
def test_committed_fixtures_are_byte_identical_to_the_shared_reference():
    for path in sorted(OFFICIAL.rglob("*")):
        if path.is_file():
            reference = SHARED / path.relative_to(OFFICIAL)
            assert reference.is_file(), f"{path} has no counterpart in {SHARED}"
            assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(reference.read_bytes()).digest(), path
