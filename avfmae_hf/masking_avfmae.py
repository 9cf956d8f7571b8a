# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Dual masking of AVF-MAE++ pretraining (architecture.md §5): encoder masks hide tokens from the encoders, decoder
masks choose which positions the decoders reconstruct. All masks are bool `(batch_size, num_tokens)`, True = masked
(hidden from the encoder, or not reconstructed by the decoder), token index in raster order of the token grid."""

from dataclasses import dataclass

import torch

from .configuration_avfmae import AVFMAEConfig, num_masked_tokens


def random_mask(
    batch_size: int, num_tokens: int, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Masks `num_masked_tokens(mask_ratio, num_tokens)` tokens per sample, uniformly at random."""
    num_masked = num_masked_tokens(mask_ratio, num_tokens)
    ranks = torch.rand(batch_size, num_tokens, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < num_masked


def tube_mask(
    batch_size: int, grid: tuple[int, int, int], mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Masks the same `num_masked_tokens(mask_ratio, height * width)` spatial positions in every time slice of `grid`."""
    num_slices, height, width = grid
    per_slice = random_mask(batch_size, height * width, mask_ratio, generator)
    return per_slice.repeat(1, num_slices)


def running_cell_patterns(grid: tuple[int, int, int], mask_ratio: float) -> torch.Tensor:
    """The four running-cell masks of `grid`, as `(4, num_tokens)`.

    A 2x2 cell holds `num_masked_tokens(mask_ratio, 4)` masked entries, read cyclically from the queue [1, .., 1, 0, .., 0]; the
    cell tiles every time slice and its read pointer advances by one position per slice. The four masks are the four
    starting phases (architecture.md §5).
    """
    num_slices, height, width = grid
    num_masked = num_masked_tokens(mask_ratio, 4)
    queue = torch.tensor([1] * num_masked + [0] * (4 - num_masked), dtype=torch.bool)
    phases = torch.arange(4).view(4, 1, 1)
    slices = torch.arange(num_slices).view(1, num_slices, 1)
    offsets = torch.arange(4).view(1, 1, 4)
    # (phase, slice, cell entry): the pointer of slice k in phase p is p + k + 1
    cells = queue[(offsets + phases + slices + 1) % 4].view(4, num_slices, 2, 2)
    tiled = cells.repeat(1, 1, height // 2, width // 2)
    return tiled.reshape(4, num_slices * height * width)


def running_cell_mask(
    batch_size: int, grid: tuple[int, int, int], mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One of the four running-cell phases per sample, drawn uniformly."""
    patterns = running_cell_patterns(grid, mask_ratio)
    return patterns[torch.randint(len(patterns), (batch_size,), generator=generator)]


@dataclass
class AVFMAEMasks:
    """The four pretraining masks, each bool `(batch_size, num_tokens)` with True = masked."""

    video_bool_masked_pos: torch.Tensor
    video_decoder_bool_masked_pos: torch.Tensor
    audio_bool_masked_pos: torch.Tensor
    audio_decoder_bool_masked_pos: torch.Tensor


class AVFMAEDualMaskingGenerator:
    """Draws the four masks of a pretraining batch from the strategies and ratios in an [`AVFMAEConfig`].

    The official code draws masks with NumPy in the data loader; this generator draws the same distributions with a
    `torch.Generator`, so a seeded generator gives reproducible masks.

    Example:

    ```python
    >>> generator = AVFMAEDualMaskingGenerator(AVFMAEConfig())
    >>> masks = generator(batch_size=2, generator=torch.Generator().manual_seed(0))
    >>> masks.video_bool_masked_pos.shape, int(masks.video_bool_masked_pos[0].sum())
    (torch.Size([2, 800]), 720)
    ```
    """

    def __init__(self, config: AVFMAEConfig):
        self.video_config = config.video_config
        self.audio_config = config.audio_config

    def _draw(self, strategy: str, tower_config, ratio: float, batch_size: int, generator) -> torch.Tensor:
        grid = tower_config.token_grid()
        if strategy == "tube":
            return tube_mask(batch_size, grid, ratio, generator)
        if strategy == "running_cell":
            return running_cell_mask(batch_size, grid, ratio, generator)
        return random_mask(batch_size, tower_config.num_tokens, ratio, generator)

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> AVFMAEMasks:
        video, audio = self.video_config, self.audio_config
        return AVFMAEMasks(
            video_bool_masked_pos=self._draw(video.masking_strategy, video, video.mask_ratio, batch_size, generator),
            video_decoder_bool_masked_pos=self._draw(
                video.decoder_masking_strategy, video, video.decoder_mask_ratio, batch_size, generator
            ),
            audio_bool_masked_pos=self._draw(audio.masking_strategy, audio, audio.mask_ratio, batch_size, generator),
            audio_decoder_bool_masked_pos=self._draw(
                audio.decoder_masking_strategy, audio, audio.decoder_mask_ratio, batch_size, generator
            ),
        )


__all__ = [
    "AVFMAEDualMaskingGenerator",
    "AVFMAEMasks",
    "random_mask",
    "running_cell_mask",
    "running_cell_patterns",
    "tube_mask",
]
