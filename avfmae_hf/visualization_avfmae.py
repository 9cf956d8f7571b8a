# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Reconstruction figures: what the pretraining decoders make of the parts of a clip the encoder did not see.

[`reconstruction_images`] turns one clip of an [`AVFMAEForPreTrainingOutput`] and its inputs back into frames and a
spectrogram, [`plot_reconstruction`] draws them as one figure (matplotlib: `pip install "avfmae-hf[plot]"`), and
[`ReconstructionLogger`] writes that figure every K steps of a pretraining run and sends it to the run's trackers.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.utils import logging

from .configuration_avfmae import AVFMAEConfig
from .modeling_avfmae import AVFMAEForPreTrainingOutput, patch_statistics, patchify, unpatchify


logger = logging.get_logger(__name__)

# Hidden patches are drawn in this grey (in [0, 1] pixels for frames; the colour of NaN for spectrograms).
MASK_GREY = 0.5
# Figure layout, in inches: a frame's width, a margin for the row names and the spectrograms' colour bars.
FRAME_INCHES = 1.25
SPECTROGRAM_INCHES = 1.6
MARGIN_INCHES = 1.5
TITLE_INCHES = 0.6
# Trackers whose `log_images` takes a list of images per key; the others with `log_images` take one image.
LIST_IMAGE_TRACKERS = ("wandb", "swanlab")


def require_matplotlib():
    """The `matplotlib.figure` module, or an `ImportError` that says how to install it."""
    try:
        import matplotlib.figure
    except ImportError as error:
        raise ImportError(
            'Reconstruction figures need matplotlib: pip install "avfmae-hf[plot]" (or pip install matplotlib).'
        ) from error
    return matplotlib.figure


@dataclass
class ReconstructionImages:
    """One clip as the reconstruction figure shows it (numpy, on the CPU).

    frames, masked_frames, reconstructed_frames (`np.ndarray` of shape `(num_frames, height, width, num_channels)`):
        The input frames in [0, 1] pixels; the same with the tubelets hidden from the encoder in `MASK_GREY`; and
        the decoder's output at every decoded position over the masked frames (so hidden positions that were not
        decoded stay grey), clipped to [0, 1].
    spectrogram, masked_spectrogram, reconstructed_spectrogram (`np.ndarray` of shape `(max_length, num_mel_bins)`):
        The input log-mel spectrogram (normalised as the model sees it), and the same two views for audio, with NaN
        where a frame would be grey.
    video_hidden, video_decoded, audio_hidden, audio_decoded (`np.ndarray` of bool, shape `token_grid`):
        Per token, in the tower's token grid (`(tubelets, rows, columns)` for video, `(1, time, mel)` for audio):
        hidden from the encoder, and reconstructed by the decoder.
    """

    frames: np.ndarray
    masked_frames: np.ndarray
    reconstructed_frames: np.ndarray
    spectrogram: np.ndarray
    masked_spectrogram: np.ndarray
    reconstructed_spectrogram: np.ndarray
    video_hidden: np.ndarray
    video_decoded: np.ndarray
    audio_hidden: np.ndarray
    audio_decoded: np.ndarray


def undo_frame_difference(patches: torch.Tensor, tubelet_size: int) -> torch.Tensor:
    """Inverse of the frame-difference target: the later frames of every tubelet `(B, N, tubelet_size * P, channels)`
    are differences to its first frame; add the first frame back."""
    frames = patches.unflatten(2, (tubelet_size, -1))
    first = frames[:, :, :1]
    return torch.cat([first, frames[:, :, 1:] + first], dim=2).flatten(2, 3)


def fill_decoded_positions(
    patches: torch.Tensor,
    logits: torch.Tensor,
    hidden: torch.Tensor,
    decoded: torch.Tensor,
    normalized: bool,
    frame_difference_tubelet_size: int | None,
    fill_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked and the reconstructed view of one tower's input patches `(1, N, P, channels)`.

    `logits` `(1, N_dec, P * channels)` are the decoder's outputs at the `decoded` positions (increasing order); they
    are brought back to the input's units: the frame difference undone (when `frame_difference_tubelet_size` is
    given), then, for per-patch normalised targets, each patch scaled back with the input patch's own mean and std
    (as VideoMAE's visualisation does: the reconstruction has no statistics of its own).
    """
    num_channels = patches.shape[-1]
    reconstructed = logits.float().view(1, -1, patches.shape[2], num_channels)
    if frame_difference_tubelet_size is not None:
        reconstructed = undo_frame_difference(reconstructed, frame_difference_tubelet_size)
    if normalized:
        mean, scale = patch_statistics(patches[decoded].unsqueeze(0))
        reconstructed = reconstructed * scale + mean
    masked = torch.where(hidden[..., None, None], torch.full_like(patches, fill_value), patches)
    filled = masked.masked_scatter(decoded[..., None, None].expand_as(masked), reconstructed)
    return masked, filled


def reconstruction_images(
    outputs: AVFMAEForPreTrainingOutput,
    pixel_values: torch.Tensor,
    audio_values: torch.Tensor,
    config: AVFMAEConfig,
    sample_index: int = 0,
) -> ReconstructionImages:
    """Frames and spectrograms of clip `sample_index` of a batch: input, masked input and reconstruction.

    Args:
        outputs ([`AVFMAEForPreTrainingOutput`]): what `AVFMAEForPreTraining` returned for the batch (logits and the
            four masks).
        pixel_values (`torch.Tensor` of shape `(batch_size, num_frames, num_channels, height, width)`): the batch's
            ImageNet-normalised frames.
        audio_values (`torch.Tensor` of shape `(batch_size, 1, max_length, num_mel_bins)`): its spectrograms.
        config ([`AVFMAEConfig`]): the model's config (geometry, `norm_pix_loss`, `use_frame_difference_target`).
        sample_index (`int`): which clip of the batch.
    """
    for name in (
        "video_logits",
        "audio_logits",
        "video_bool_masked_pos",
        "video_decoder_bool_masked_pos",
        "audio_bool_masked_pos",
        "audio_decoder_bool_masked_pos",
    ):
        if getattr(outputs, name, None) is None:
            raise ValueError(f"outputs.{name} is missing: pass the AVFMAEForPreTrainingOutput of the batch.")
    video_config, audio_config = config.video_config, config.audio_config
    expected = {
        "pixel_values": (
            video_config.num_frames,
            video_config.num_channels,
            video_config.image_size,
            video_config.image_size,
        ),
        "audio_values": (1, audio_config.max_length, audio_config.num_mel_bins),
    }
    for name, values in (("pixel_values", pixel_values), ("audio_values", audio_values)):
        if values.dim() != 1 + len(expected[name]) or tuple(values.shape[1:]) != expected[name]:
            raise ValueError(
                f"{name} has shape {tuple(values.shape)}; the config expects (batch_size, "
                f"{', '.join(map(str, expected[name]))})."
            )
    batch_size = pixel_values.shape[0]
    if not 0 <= sample_index < batch_size:
        raise ValueError(f"sample_index {sample_index} is outside the batch of {batch_size} clips.")

    def one_clip(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[sample_index : sample_index + 1].detach().cpu()

    # video: back to [0, 1] pixels, then tubelets (1, N, tubelet * p * p, channels), as the model's targets are made
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, -1, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 1, -1, 1, 1)
    pixels = one_clip(pixel_values).float() * std + mean
    video_patches = patchify(pixels, video_config.tubelet_size, video_config.patch_size)
    video_hidden = one_clip(outputs.video_bool_masked_pos).bool()
    video_decoded = ~one_clip(outputs.video_decoder_bool_masked_pos).bool()
    masked_video, filled_video = fill_decoded_positions(
        video_patches,
        one_clip(outputs.video_logits),
        video_hidden,
        video_decoded,
        normalized=config.norm_pix_loss,
        frame_difference_tubelet_size=video_config.tubelet_size if config.use_frame_difference_target else None,
        fill_value=MASK_GREY,
    )

    # audio: a spectrogram (1, 1, time, mel) is a one-frame, one-channel video, as for its targets
    spectrogram = one_clip(audio_values).float().unsqueeze(1)
    audio_patches = patchify(spectrogram, 1, audio_config.patch_size)
    audio_hidden = one_clip(outputs.audio_bool_masked_pos).bool()
    audio_decoded = ~one_clip(outputs.audio_decoder_bool_masked_pos).bool()
    masked_audio, filled_audio = fill_decoded_positions(
        audio_patches,
        one_clip(outputs.audio_logits),
        audio_hidden,
        audio_decoded,
        normalized=config.norm_pix_loss,
        frame_difference_tubelet_size=None,
        fill_value=float("nan"),
    )

    def frames_of(patches: torch.Tensor) -> np.ndarray:
        size = video_config.image_size
        video = unpatchify(patches, video_config.num_frames, size, size, video_config.patch_size)
        # (T, H, W, channels) for drawing
        return video[0].permute(0, 2, 3, 1).clamp(0, 1).numpy()

    def spectrogram_of(patches: torch.Tensor) -> np.ndarray:
        values = unpatchify(patches, 1, audio_config.max_length, audio_config.num_mel_bins, audio_config.patch_size)
        return values[0, 0, 0].numpy()

    return ReconstructionImages(
        frames=frames_of(video_patches),
        masked_frames=frames_of(masked_video),
        reconstructed_frames=frames_of(filled_video),
        spectrogram=spectrogram_of(audio_patches),
        masked_spectrogram=spectrogram_of(masked_audio),
        reconstructed_spectrogram=spectrogram_of(filled_audio),
        video_hidden=video_hidden[0].view(video_config.token_grid()).numpy(),
        video_decoded=video_decoded[0].view(video_config.token_grid()).numpy(),
        audio_hidden=audio_hidden[0].view(audio_config.token_grid()).numpy(),
        audio_decoded=audio_decoded[0].view(audio_config.token_grid()).numpy(),
    )


def figure_size(config: AVFMAEConfig) -> tuple[float, float]:
    """Width and height in inches of the reconstruction figure for a model config."""
    width = config.video_config.num_frames * FRAME_INCHES + MARGIN_INCHES
    height = 3 * FRAME_INCHES + 3 * SPECTROGRAM_INCHES + TITLE_INCHES
    return width, height


def frame_strip(frames: np.ndarray, gap: int) -> np.ndarray:
    """Frames `(T, H, W, channels)` side by side, `gap` white columns apart: `(H, T * (W + gap) - gap, channels)`."""
    num_frames, height, _, num_channels = frames.shape
    white = np.ones((num_frames, height, gap, num_channels), dtype=frames.dtype)
    strip = np.concatenate([frames, white], axis=2).transpose(1, 0, 2, 3).reshape(height, -1, num_channels)
    return strip[:, : strip.shape[1] - gap]


def plot_reconstruction(
    outputs: AVFMAEForPreTrainingOutput,
    pixel_values: torch.Tensor,
    audio_values: torch.Tensor,
    config: AVFMAEConfig,
    sample_index: int = 0,
    title: str | None = None,
    dpi: int = 100,
):
    """Draws clip `sample_index` of a pretraining batch: rows of input frames, masked input and reconstruction (the
    frames side by side), then the spectrogram, the masked spectrogram and its reconstruction.

    Hidden patches are grey. The reconstruction rows show the decoder's output at the positions it decodes, in
    pixels (see [`reconstruction_images`]); positions hidden from the encoder and not decoded stay grey. The three
    spectrograms share one colour scale, the input's (5th percentile to maximum, since silence sits far below speech).

    Args:
        outputs, pixel_values, audio_values, config, sample_index: as in [`reconstruction_images`].
        title (`str`, *optional*): the figure's title (e.g. the step and the losses).
        dpi (`int`): pixels per inch; the figure is [`figure_size`] inches.

    Returns:
        `matplotlib.figure.Figure` with six axes, top to bottom (`figure.axes[:6]`; the colour bars follow): save it
        with `figure.savefig("reconstruction.png")`, or get its pixels with [`figure_to_array`].

    Raises:
        ImportError: matplotlib is not installed (the `plot` extra).
    """
    matplotlib_figure = require_matplotlib()
    import matplotlib

    images = reconstruction_images(outputs, pixel_values, audio_values, config, sample_index)
    num_frames, image_size = images.frames.shape[:2]
    figure = matplotlib_figure.Figure(figsize=figure_size(config), dpi=dpi, layout="constrained")
    if title is not None:
        figure.suptitle(title)
    video_axes, audio_axes = figure.subfigures(
        2, 1, height_ratios=(3 * FRAME_INCHES, 3 * SPECTROGRAM_INCHES + TITLE_INCHES)
    )

    gap = max(1, image_size // 16)
    frame_centres = np.arange(num_frames) * (image_size + gap) + (image_size - 1) / 2
    video_rows = (
        ("input", images.frames),
        ("masked input", images.masked_frames),
        ("reconstruction", images.reconstructed_frames),
    )
    for row, (axes, (row_name, frames)) in enumerate(zip(video_axes.subplots(3, 1), video_rows, strict=True)):
        strip = frame_strip(frames, gap)
        axes.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1)
        axes.set_ylabel(row_name)
        axes.set_yticks([])
        axes.set_xticks(frame_centres, [f"frame {index}" for index in range(num_frames)] if row == 0 else [])
        axes.tick_params(axis="x", length=0, labeltop=row == 0, labelbottom=False, labelsize="small")
        for side in axes.spines.values():
            side.set_visible(False)

    colour_map = matplotlib.colormaps["magma"].with_extremes(bad=(MASK_GREY,) * 3)
    low, high = np.quantile(images.spectrogram, 0.05), images.spectrogram.max()
    time_steps, mel_bins = images.spectrogram.shape
    audio_rows = (
        ("spectrogram", images.spectrogram),
        ("masked spectrogram (hidden patches grey)", images.masked_spectrogram),
        ("reconstruction (decoded patches filled in; hidden and not decoded: grey)", images.reconstructed_spectrogram),
    )
    for row, (axes, (row_name, spectrogram)) in enumerate(
        zip(audio_axes.subplots(3, 1, sharex=True), audio_rows, strict=True)
    ):
        # time to the right, low frequencies at the bottom
        drawn = axes.imshow(
            spectrogram.T,
            origin="lower",
            aspect="auto",
            extent=(0, time_steps, 0, mel_bins),
            cmap=colour_map,
            vmin=low,
            vmax=high,
            interpolation="nearest",
        )
        axes.set_title(row_name, fontsize="medium")
        axes.set_ylabel("mel bin")
        if row == 2:
            axes.set_xlabel("time (fbank frames of 10 ms)")
        audio_axes.colorbar(drawn, ax=axes, label="log-mel\n(normalised)", pad=0.01, fraction=0.03)
    return figure


def figure_to_array(figure) -> np.ndarray:
    """A matplotlib figure as an RGB image `(height, width, 3)` of `uint8`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_image_to_trackers(trackers, tag: str, image: np.ndarray, step: int) -> None:
    """Sends one RGB image to every Accelerate tracker that takes images: TensorBoard through its writer, the
    others through their `log_images`; a tracker without image support is told about once, in a warning."""
    for tracker in trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image(tag, image, global_step=step, dataformats="HWC")
            tracker.writer.flush()
        elif hasattr(tracker, "log_images"):
            tracker.log_images({tag: [image] if tracker.name in LIST_IMAGE_TRACKERS else image}, step=step)
        else:
            logger.warning_once(
                f"The {tracker.name} tracker takes no images; the reconstruction figures are PNG files."
            )


class ReconstructionLogger:
    """Draws the reconstruction figure of a pretraining run every `every_steps` optimizer steps and at `max_steps`.

    Call it after each optimizer step with the step's batch and outputs: on the main process it draws the batch's
    first clip (with the masks it was trained with) into `<output_dir>/reconstructions/step_<n>.png` and sends the
    image to the Accelerate trackers under the tag `reconstruction`. Other processes draw nothing, so it works with
    any way of distributing the model (no extra forward pass).

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator (main process, trackers).
        config ([`AVFMAEConfig`]): the model's config.
        output_dir (`str` or `os.PathLike`): the run's output folder.
        every_steps (`int`): draw every this many steps; 0 draws nothing.
        max_steps (`int`): the run's last step, which is always drawn (when `every_steps > 0`).

    Raises:
        ValueError: `every_steps` is negative.
        ImportError: figures are asked for and matplotlib is missing (checked here, before training starts).
    """

    def __init__(self, accelerator, config: AVFMAEConfig, output_dir: str | os.PathLike, every_steps: int, max_steps):
        if every_steps < 0:
            raise ValueError(f"reconstruction_steps must be 0 (no figures) or positive, got {every_steps}.")
        if every_steps:
            require_matplotlib()
        self.accelerator = accelerator
        self.config = config
        self.directory = Path(output_dir) / "reconstructions"
        self.every_steps = every_steps
        self.max_steps = max_steps

    def is_due(self, step: int) -> bool:
        return self.every_steps > 0 and (step % self.every_steps == 0 or step >= self.max_steps)

    def __call__(self, step: int, batch: dict, outputs: AVFMAEForPreTrainingOutput) -> Path | None:
        """Draws the figure if `step` is due; returns the PNG's path on the main process, else `None`."""
        if not self.is_due(step) or not self.accelerator.is_main_process:
            return None
        title = (
            f"step {step}: video loss {outputs.video_loss.item():.4f}, audio loss {outputs.audio_loss.item():.4f} "
            "(first clip of the main process's batch)"
        )
        figure = plot_reconstruction(
            outputs, batch["pixel_values"], batch["audio_values"], self.config, sample_index=0, title=title
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"step_{step}.png"
        # drawn once: the PNG and the trackers get the same pixels
        image = figure_to_array(figure)
        Image.fromarray(image).save(path)
        log_image_to_trackers(self.accelerator.trackers, "reconstruction", image, step)
        return path


__all__ = [
    "MASK_GREY",
    "ReconstructionImages",
    "ReconstructionLogger",
    "figure_size",
    "figure_to_array",
    "log_image_to_trackers",
    "plot_reconstruction",
    "reconstruction_images",
    "require_matplotlib",
    "undo_frame_difference",
]
