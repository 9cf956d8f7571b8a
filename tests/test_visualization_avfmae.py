# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Reconstruction figures: the images put every patch where the model's token grid has it, undo the targets'
normalisation and frame difference, grey exactly the hidden patches, and the logger writes and sends the due steps."""

import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from avfmae_hf import AVFMAEForPreTraining
from avfmae_hf.visualization_avfmae import (
    MASK_GREY,
    ReconstructionLogger,
    figure_to_array,
    plot_reconstruction,
    reconstruction_images,
    require_matplotlib,
    undo_frame_difference,
)
from tests.tiny_configs import tiny_config


def reddish_inputs(config, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Frames whose pixels are far from grey (red in [0.8, 1], green and blue in [0, 0.2]), ImageNet-normalised as
    the processor makes them, and a random spectrogram."""
    generator = torch.Generator().manual_seed(seed)
    video, audio = config.video_config, config.audio_config
    shape = (batch_size, video.num_frames, 1, video.image_size, video.image_size)
    pixels = torch.cat(
        [
            0.8 + 0.2 * torch.rand(shape, generator=generator),
            0.2 * torch.rand((*shape[:2], 2, *shape[3:]), generator=generator),
        ],
        dim=2,
    )
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 1, 3, 1, 1)
    spectrogram = torch.randn(batch_size, 1, audio.max_length, audio.num_mel_bins, generator=generator)
    return {"pixels": pixels, "pixel_values": (pixels - mean) / std, "audio_values": spectrogram}


def pretraining_outputs(config, inputs):
    torch.manual_seed(0)
    model = AVFMAEForPreTraining(config).eval()
    with torch.no_grad():
        return model(
            pixel_values=inputs["pixel_values"],
            audio_values=inputs["audio_values"],
            generator=torch.Generator().manual_seed(1),
        )


def video_patch(frames: np.ndarray, token: tuple[int, int, int], tubelet_size: int, patch_size: int) -> np.ndarray:
    """The pixels `(tubelet_size, p, p, channels)` of video token `(t, h, w)`: frames `t * tubelet_size` onwards,
    rows `h * p` onwards, columns `w * p` onwards."""
    t, h, w = token
    return frames[
        t * tubelet_size : (t + 1) * tubelet_size,
        h * patch_size : (h + 1) * patch_size,
        w * patch_size : (w + 1) * patch_size,
    ]


def audio_patch(spectrogram: np.ndarray, token: tuple[int, int], patch_size: int) -> np.ndarray:
    """The values `(p, p)` of audio token `(i, j)`: time frames `i * p` onwards, mel bins `j * p` onwards."""
    i, j = token
    return spectrogram[i * patch_size : (i + 1) * patch_size, j * patch_size : (j + 1) * patch_size]


@pytest.mark.parametrize(
    ("norm_pix_loss", "use_frame_difference_target"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_a_perfect_reconstruction_shows_the_input_at_every_decoded_position(
    norm_pix_loss, use_frame_difference_target
):
    config = tiny_config(norm_pix_loss=norm_pix_loss, use_frame_difference_target=use_frame_difference_target)
    inputs = reddish_inputs(config)
    outputs = pretraining_outputs(config, inputs)
    # logits equal to the model's own targets: whatever the target transform, the figure must show the input
    perfect = replace(outputs, video_logits=outputs.video_targets, audio_logits=outputs.audio_targets)
    video, audio = config.video_config, config.audio_config
    for sample_index in (0, 1):
        images = reconstruction_images(
            perfect, inputs["pixel_values"], inputs["audio_values"], config, sample_index=sample_index
        )
        frames = inputs["pixels"][sample_index].permute(0, 2, 3, 1).numpy()  # (T, H, W, channels)
        np.testing.assert_allclose(images.frames, frames, atol=1e-6)
        np.testing.assert_allclose(images.spectrogram, inputs["audio_values"][sample_index, 0].numpy(), atol=1e-6)
        hidden = outputs.video_bool_masked_pos[sample_index].view(video.token_grid()).numpy()
        decoded = ~outputs.video_decoder_bool_masked_pos[sample_index].view(video.token_grid()).numpy()
        np.testing.assert_array_equal(images.video_hidden, hidden)
        np.testing.assert_array_equal(images.video_decoded, decoded)
        for token in np.ndindex(*video.token_grid()):
            args = (token, video.tubelet_size, video.patch_size)
            masked = video_patch(images.masked_frames, *args)
            reconstructed = video_patch(images.reconstructed_frames, *args)
            original = video_patch(frames, *args)
            if hidden[token]:
                assert (masked == MASK_GREY).all(), token
            else:
                np.testing.assert_allclose(masked, original, atol=1e-6, err_msg=str(token))
            if decoded[token] or not hidden[token]:
                np.testing.assert_allclose(reconstructed, original, atol=1e-5, err_msg=str(token))
            else:
                assert (reconstructed == MASK_GREY).all(), token
        audio_grid = audio.token_grid()[1:]
        hidden = outputs.audio_bool_masked_pos[sample_index].view(audio_grid).numpy()
        decoded = ~outputs.audio_decoder_bool_masked_pos[sample_index].view(audio_grid).numpy()
        spectrogram = inputs["audio_values"][sample_index, 0].numpy()
        for token in np.ndindex(*audio_grid):
            masked = audio_patch(images.masked_spectrogram, token, audio.patch_size)
            reconstructed = audio_patch(images.reconstructed_spectrogram, token, audio.patch_size)
            original = audio_patch(spectrogram, token, audio.patch_size)
            if hidden[token]:
                assert np.isnan(masked).all(), token
            else:
                np.testing.assert_allclose(masked, original, atol=1e-6, err_msg=str(token))
            if decoded[token] or not hidden[token]:
                np.testing.assert_allclose(reconstructed, original, atol=1e-4, err_msg=str(token))
            else:
                assert np.isnan(reconstructed).all(), token


def test_undo_frame_difference_adds_the_first_frame_to_the_later_ones():
    # one token, tubelet of 2 frames with 2 values each, one channel: first frame (1, 2), differences (10, 20)
    patches = torch.tensor([1.0, 2.0, 10.0, 20.0]).view(1, 1, 4, 1)
    assert undo_frame_difference(patches, tubelet_size=2).flatten().tolist() == [1.0, 2.0, 11.0, 22.0]


def test_normalised_targets_are_shown_in_the_input_patch_mean_and_std():
    # a reconstruction of all zeros in normalised units is each input patch's mean (VideoMAE's visualisation rule)
    config = tiny_config(use_frame_difference_target=False)
    inputs = reddish_inputs(config)
    outputs = pretraining_outputs(config, inputs)
    zeros = replace(
        outputs,
        video_logits=torch.zeros_like(outputs.video_logits),
        audio_logits=torch.zeros_like(outputs.audio_logits),
    )
    images = reconstruction_images(zeros, inputs["pixel_values"], inputs["audio_values"], config)
    video = config.video_config
    frames = inputs["pixels"][0].permute(0, 2, 3, 1).numpy()
    decoded = ~outputs.video_decoder_bool_masked_pos[0].view(video.token_grid()).numpy()
    token = next(token for token in np.ndindex(*video.token_grid()) if decoded[token])
    patch_mean = video_patch(frames, token, video.tubelet_size, video.patch_size).mean(axis=(0, 1, 2))
    shown = video_patch(images.reconstructed_frames, token, video.tubelet_size, video.patch_size)
    np.testing.assert_allclose(shown, np.broadcast_to(patch_mean, shown.shape), atol=1e-6)


def pixel_at(image: np.ndarray, axes, x: float, y: float) -> np.ndarray:
    """The RGB pixel of `image` (the drawn figure) at data point `(x, y)` of `axes`."""
    column, row_from_bottom = axes.transData.transform((x, y))
    return image[int(image.shape[0] - row_from_bottom), int(column)].astype(int)


def is_grey(pixel: np.ndarray) -> bool:
    return bool(np.abs(pixel - round(MASK_GREY * 255)).max() <= 2)


def test_the_figure_has_six_labelled_panels_and_grey_exactly_where_patches_are_hidden():
    config = tiny_config()
    inputs = reddish_inputs(config)
    outputs = pretraining_outputs(config, inputs)
    figure = plot_reconstruction(
        outputs, inputs["pixel_values"], inputs["audio_values"], config, sample_index=1, title="step 7", dpi=100
    )
    image = figure_to_array(figure)
    # 16 frames x 1.25 in + 1.5 in margin wide; 3 frame rows x 1.25 in + 3 spectrograms x 1.6 in + 0.6 in title high
    assert image.shape == (915, 2150, 3)
    assert figure.get_suptitle() == "step 7"

    panels = figure.axes[:6]
    assert [axes.get_ylabel() for axes in panels] == ["input", "masked input", "reconstruction"] + ["mel bin"] * 3
    assert [label.get_text() for label in panels[0].get_xticklabels()] == [f"frame {index}" for index in range(16)]
    assert [axes.get_title() for axes in panels[3:]] == [
        "spectrogram",
        "masked spectrogram (hidden patches grey)",
        "reconstruction (decoded patches filled in; hidden and not decoded: grey)",
    ]
    assert panels[5].get_xlabel() == "time (fbank frames of 10 ms)"
    for axes in panels:
        box = axes.get_window_extent()
        region = image[int(image.shape[0] - box.y1) : int(image.shape[0] - box.y0), int(box.x0) : int(box.x1)]
        assert region.size and region.std() > 10, f"{axes.get_ylabel()} panel looks blank"

    # frame strip: frame f is centred on the f-th tick, its pixel (row, column) at data x = left edge + column
    video, audio = config.video_config, config.audio_config
    size, patch = video.image_size, video.patch_size
    frame_centres = panels[1].get_xticks()
    video_hidden = outputs.video_bool_masked_pos[1].view(video.token_grid())
    for t, h, w in np.ndindex(*video.token_grid()):
        for frame in range(t * video.tubelet_size, (t + 1) * video.tubelet_size):
            x = frame_centres[frame] - (size - 1) / 2 + w * patch + (patch - 1) / 2
            y = h * patch + (patch - 1) / 2
            masked_pixel = pixel_at(image, panels[1], x, y)
            assert is_grey(masked_pixel) == bool(video_hidden[t, h, w]), (t, h, w, frame, masked_pixel)
            assert not is_grey(pixel_at(image, panels[0], x, y)), (t, h, w, frame)
    # spectrograms: time to the right, mel bins upwards, one data unit per fbank frame and per mel bin
    audio_hidden = outputs.audio_bool_masked_pos[1].view(audio.token_grid()[1:])
    audio_decoded = ~outputs.audio_decoder_bool_masked_pos[1].view(audio.token_grid()[1:])
    for i, j in np.ndindex(*audio.token_grid()[1:]):
        x, y = (i + 0.5) * audio.patch_size, (j + 0.5) * audio.patch_size
        assert is_grey(pixel_at(image, panels[4], x, y)) == bool(audio_hidden[i, j]), (i, j)
        if audio_hidden[i, j] and not audio_decoded[i, j]:
            assert is_grey(pixel_at(image, panels[5], x, y)), (i, j)
        if not audio_hidden[i, j] and not audio_decoded[i, j]:
            assert not is_grey(pixel_at(image, panels[5], x, y)), (i, j)


def test_bad_arguments_get_errors_that_name_them():
    config = tiny_config()
    inputs = reddish_inputs(config)
    outputs = pretraining_outputs(config, inputs)
    with pytest.raises(ValueError, match="outputs.video_logits is missing"):
        reconstruction_images(
            replace(outputs, video_logits=None), inputs["pixel_values"], inputs["audio_values"], config
        )
    with pytest.raises(ValueError, match=r"pixel_values has shape \(2, 16, 3, 8, 8\); the config expects"):
        reconstruction_images(outputs, inputs["pixel_values"][..., :8, :8], inputs["audio_values"], config)
    with pytest.raises(ValueError, match="sample_index 2 is outside the batch of 2"):
        reconstruction_images(outputs, inputs["pixel_values"], inputs["audio_values"], config, sample_index=2)
    with pytest.raises(ValueError, match="reconstruction_steps must be 0 .* got -1"):
        ReconstructionLogger(SimpleNamespace(), config, "unused", every_steps=-1, max_steps=3)


def test_without_matplotlib_the_import_error_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "avfmae-hf\[plot\]"'):
        require_matplotlib()
    with pytest.raises(ImportError, match="matplotlib"):
        ReconstructionLogger(SimpleNamespace(), tiny_config(), "unused", every_steps=5, max_steps=10)
    ReconstructionLogger(SimpleNamespace(), tiny_config(), "unused", every_steps=0, max_steps=10)  # no figures asked


class RecordingWriter:
    def __init__(self):
        self.images = []

    def add_image(self, tag, image, global_step, dataformats):
        self.images.append((tag, image.shape, global_step, dataformats))

    def flush(self):
        pass


class RecordingTracker:
    def __init__(self, name):
        self.name, self.logged = name, []

    def log_images(self, values, step):
        self.logged.append((values, step))


@pytest.mark.slow
def test_the_logger_draws_every_k_steps_and_the_last_on_the_main_process_only(tmp_path):
    config = tiny_config()
    inputs = reddish_inputs(config)
    outputs = pretraining_outputs(config, inputs)
    batch = {"pixel_values": inputs["pixel_values"], "audio_values": inputs["audio_values"]}
    tensorboard = SimpleNamespace(name="tensorboard", writer=RecordingWriter())
    wandb, aim, mlflow = RecordingTracker("wandb"), RecordingTracker("aim"), SimpleNamespace(name="mlflow")
    main = SimpleNamespace(is_main_process=True, trackers=[tensorboard, wandb, aim, mlflow])
    log_reconstruction = ReconstructionLogger(main, config, tmp_path, every_steps=2, max_steps=3)
    written = [log_reconstruction(step, batch, outputs) for step in (1, 2, 3)]
    assert written == [None, tmp_path / "reconstructions" / "step_2.png", tmp_path / "reconstructions" / "step_3.png"]
    assert sorted(path.name for path in (tmp_path / "reconstructions").iterdir()) == ["step_2.png", "step_3.png"]
    assert Image.open(written[1]).size == (2150, 915)
    assert tensorboard.writer.images == [
        ("reconstruction", (915, 2150, 3), 2, "HWC"),
        ("reconstruction", (915, 2150, 3), 3, "HWC"),
    ]
    # wandb takes a list of images per key, aim one image
    assert [(len(values["reconstruction"]), step) for values, step in wandb.logged] == [(1, 2), (1, 3)]
    assert [(values["reconstruction"].shape, step) for values, step in aim.logged] == [((915, 2150, 3), 2)] + [
        ((915, 2150, 3), 3)
    ]

    other = SimpleNamespace(is_main_process=False, trackers=[])
    assert (
        ReconstructionLogger(other, config, tmp_path / "other", every_steps=1, max_steps=3)(1, batch, outputs) is None
    )
    assert not (tmp_path / "other").exists()
