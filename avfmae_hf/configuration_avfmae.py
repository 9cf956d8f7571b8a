# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ model configuration: a video tower, an audio tower and the IAV-CLM fusion module."""

import math
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)

VIDEO_MASKING_STRATEGIES = ("tube",)
VIDEO_DECODER_MASKING_STRATEGIES = ("running_cell", "random")
AUDIO_MASKING_STRATEGIES = ("random",)
AUDIO_DECODER_MASKING_STRATEGIES = ("random",)

# Widths, depths and intermediate layers of the three released sizes (architecture.md §2.3). Depths and
# intermediate layers are not part of the official registry names; every release script passes these values.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "base": {
        "hidden_size": 512,
        "num_hidden_layers": 10,
        "num_attention_heads": 8,
        "decoder_hidden_size": 384,
        "decoder_num_attention_heads": 6,
        "intermediate_layer_indices": (3, 6, 9),
    },
    "large": {
        "hidden_size": 640,
        "num_hidden_layers": 12,
        "num_attention_heads": 10,
        "decoder_hidden_size": 512,
        "decoder_num_attention_heads": 8,
        "intermediate_layer_indices": (3, 7, 11),
    },
    "huge": {
        "hidden_size": 768,
        "num_hidden_layers": 15,
        "num_attention_heads": 12,
        "decoder_hidden_size": 640,
        "decoder_num_attention_heads": 8,
        "intermediate_layer_indices": (4, 9, 14),
    },
}


def model_size_name(hidden_size: int, num_hidden_layers: int | None = None) -> str | None:
    """The released size (`"base"`, `"large"` or `"huge"`) with this encoder width (and depth, when given), else
    `None`."""
    for name, size in MODEL_SIZES.items():
        if size["hidden_size"] == hidden_size and num_hidden_layers in (None, size["num_hidden_layers"]):
            return name
    return None


def num_masked_tokens(mask_ratio: float, num_tokens: int) -> int:
    """Tokens a mask of `mask_ratio` hides among `num_tokens`: `int(mask_ratio * num_tokens)`, the official rounding
    (towards zero) used by every masking strategy."""
    return int(mask_ratio * num_tokens)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def visible_tokens_per_region(grid: tuple[int, int, int], region_size: tuple[int, int, int], num_visible: int) -> int:
    """Tokens each region receives when the encoder sees only `num_visible` of the `grid` tokens.

    Pretraining groups the visible tokens by their order, not by position (architecture.md §4.1): the visible
    sequence is viewed as `(time_regions, region_time, spatial_regions, k)` with
    `k = int(region_h * region_w * num_visible / num_tokens)`. That view exists only when the counts add up; this
    function returns `region_time * k` and raises a `ValueError` naming the rule when they do not.
    """
    num_tokens = math.prod(grid)
    num_spatial_regions = (grid[1] // region_size[1]) * (grid[2] // region_size[2])
    # Same float arithmetic as the official code, so the same ratios pass or fail.
    per_slice_and_region = int(region_size[1] * region_size[2] * (num_visible / num_tokens))
    _check(
        per_slice_and_region > 0 and num_visible == grid[0] * num_spatial_regions * per_slice_and_region,
        f"{num_visible} visible of {num_tokens} tokens (grid {tuple(grid)}) cannot be grouped into "
        f"{num_spatial_regions * grid[0] // region_size[0]} regions of size {tuple(region_size)}: pretraining groups "
        f"visible tokens by order and needs visible == grid_t * spatial_regions * int(region_h * region_w * "
        f"visible / total) (here {grid[0]} * {num_spatial_regions} * {per_slice_and_region} = "
        f"{grid[0] * num_spatial_regions * per_slice_and_region}). Choose another mask ratio.",
    )
    return region_size[0] * per_slice_and_region


class _AVFMAEConfigChecks:
    """Runs `validate_architecture` at construction so that a bad value raises a plain `ValueError` (the `@strict`
    machinery re-runs it later, e.g. before saving, and wraps errors in its own type)."""

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_architecture()


class _AVFMAETowerConfig(_AVFMAEConfigChecks, PreTrainedConfig):
    """Fields and checks shared by the video and the audio tower (documented in [`AVFMAEVideoConfig`])."""

    hidden_size: int = 512
    num_hidden_layers: int = 10
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    decoder_mask_ratio: float = 0.5
    decoder_hidden_size: int = 384
    decoder_num_hidden_layers: int = 4
    decoder_num_attention_heads: int = 6
    decoder_intermediate_size: int = 1536
    intermediate_layer_indices: list[int] | tuple[int, ...] = (3, 6, 9)

    def token_grid(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def region_grid_size(self) -> tuple[int, int, int]:
        raise NotImplementedError

    @property
    def num_tokens(self) -> int:
        return math.prod(self.token_grid())

    @property
    def num_regions(self) -> int:
        grid, region = self.token_grid(), self.region_grid_size()
        return math.prod(g // r for g, r in zip(grid, region, strict=True))

    @property
    def num_visible_tokens(self) -> int:
        """Tokens the pretraining encoder sees per sample (the masking generator's count)."""
        if self.masking_strategy == "tube":
            per_slice = self.token_grid()[1] * self.token_grid()[2]
            return self.token_grid()[0] * (per_slice - num_masked_tokens(self.mask_ratio, per_slice))
        return self.num_tokens - num_masked_tokens(self.mask_ratio, self.num_tokens)

    @property
    def patch_dim(self) -> int:
        """Values in one reconstruction target (one patch or tubelet, all channels)."""
        raise NotImplementedError

    def _validate_tower(self, name: str, masking: tuple[str, ...], decoder_masking: tuple[str, ...]) -> None:
        _check(
            self.hidden_size % self.num_attention_heads == 0,
            f"{name}: hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
            f"({self.num_attention_heads}).",
        )
        _check(
            self.decoder_hidden_size % self.decoder_num_attention_heads == 0,
            f"{name}: decoder_hidden_size ({self.decoder_hidden_size}) must be divisible by "
            f"decoder_num_attention_heads ({self.decoder_num_attention_heads}).",
        )
        grid, region = self.token_grid(), self.region_grid_size()
        _check(
            all(r > 0 and g % r == 0 for g, r in zip(grid, region, strict=True)),
            f"{name}: region_size {tuple(self.region_size)} must divide the token grid {grid} in every dimension.",
        )
        indices = tuple(self.intermediate_layer_indices)
        _check(
            len(indices) == self.decoder_num_hidden_layers - 1,
            f"{name}: intermediate_layer_indices {indices} must have decoder_num_hidden_layers - 1 = "
            f"{self.decoder_num_hidden_layers - 1} entries (one skip connection per cross-attention decoder layer).",
        )
        _check(
            list(indices) == sorted(set(indices)) and all(0 <= i < self.num_hidden_layers for i in indices),
            f"{name}: intermediate_layer_indices {indices} must be increasing layer indices in "
            f"[0, {self.num_hidden_layers}).",
        )
        _check(
            self.masking_strategy in masking,
            f"{name}: masking_strategy {self.masking_strategy!r} is not one of {masking}.",
        )
        _check(
            self.decoder_masking_strategy in decoder_masking,
            f"{name}: decoder_masking_strategy {self.decoder_masking_strategy!r} is not one of {decoder_masking}.",
        )
        _check(0.0 < self.mask_ratio < 1.0, f"{name}: mask_ratio must be in (0, 1), got {self.mask_ratio}.")
        _check(
            0.0 < self.decoder_mask_ratio < 1.0,
            f"{name}: decoder_mask_ratio must be in (0, 1), got {self.decoder_mask_ratio}.",
        )
        try:
            visible_tokens_per_region(grid, region, self.num_visible_tokens)
        except ValueError as error:
            raise ValueError(f"{name}: mask_ratio {self.mask_ratio}: {error}") from None


@strict
class AVFMAEVideoConfig(_AVFMAETowerConfig):
    r"""
    Configuration of the AVF-MAE++ video tower (patch embedding, local-global encoder, pretraining decoder).
    Defaults are the `base` size (architecture.md §2).

    Args:
        hidden_size (`int`, defaults to 512): width of the encoder.
        num_hidden_layers (`int`, defaults to 10): number of local-global layers.
        num_attention_heads (`int`, defaults to 8): attention heads in every encoder attention.
        intermediate_size (`int`, defaults to 2048): hidden width of the encoder MLPs.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation (exact erf GELU in the official code).
        layer_norm_eps (`float`, defaults to 1e-6): epsilon of the encoder and decoder LayerNorms.
        image_size (`int`, defaults to 160): height and width of the input frames.
        patch_size (`int`, defaults to 16): spatial patch size.
        num_frames (`int`, defaults to 16): frames per clip; fixes the position table.
        tubelet_size (`int`, defaults to 2): frames per patch.
        num_channels (`int`, defaults to 3): input channels.
        region_size (`tuple[int, int, int]`, defaults to `(2, 5, 10)`): (time, height, width) of one local region,
            in tokens.
        mask_ratio (`float`, defaults to 0.9): encoder mask ratio in pretraining.
        masking_strategy (`str`, defaults to `"tube"`): encoder masking; `"tube"` (same spatial mask per time slice).
        decoder_mask_ratio (`float`, defaults to 0.5): share of positions the decoder does *not* reconstruct.
        decoder_masking_strategy (`str`, defaults to `"running_cell"`): `"running_cell"` or `"random"`.
        decoder_hidden_size (`int`, defaults to 384), decoder_num_hidden_layers (`int`, defaults to 4),
        decoder_num_attention_heads (`int`, defaults to 6), decoder_intermediate_size (`int`, defaults to 1536):
            the pretraining decoder.
        intermediate_layer_indices (`tuple[int, ...]`, defaults to `(3, 6, 9)`): encoder layers (0-based) whose
            normalised outputs feed the contrastive loss and the decoder's cross-attention layers.
    """

    model_type = "avfmae_video"
    base_config_key = "video_config"

    image_size: int = 160
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    num_channels: int = 3
    region_size: list[int] | tuple[int, int, int] = (2, 5, 10)
    mask_ratio: float = 0.9
    masking_strategy: str = "tube"
    decoder_masking_strategy: str = "running_cell"

    def token_grid(self) -> tuple[int, int, int]:
        """Token grid `(time, height, width)` of one clip."""
        patches_per_side = self.image_size // self.patch_size
        return (self.num_frames // self.tubelet_size, patches_per_side, patches_per_side)

    def region_grid_size(self) -> tuple[int, int, int]:
        return tuple(self.region_size)

    @property
    def patch_dim(self) -> int:
        return self.tubelet_size * self.patch_size**2 * self.num_channels

    def validate_architecture(self):
        _check(len(self.region_size) == 3, f"video region_size must have 3 entries, got {self.region_size}.")
        _check(
            self.image_size % self.patch_size == 0,
            f"video: image_size ({self.image_size}) must be divisible by patch_size ({self.patch_size}).",
        )
        _check(
            self.num_frames % self.tubelet_size == 0,
            f"video: num_frames ({self.num_frames}) must be divisible by tubelet_size ({self.tubelet_size}).",
        )
        if self.decoder_masking_strategy == "running_cell":
            grid = self.token_grid()
            _check(
                grid[1] % 2 == 0 and grid[2] % 2 == 0,
                f"video: the running-cell decoder mask tiles 2x2 cells and needs an even token grid, got {grid[1:]}.",
            )
            _check(
                0 < num_masked_tokens(self.decoder_mask_ratio, 4) < 4,
                f"video: the running-cell decoder mask needs 1-3 masked entries per 2x2 cell, so "
                f"decoder_mask_ratio in [0.25, 1); got {self.decoder_mask_ratio}.",
            )
        self._validate_tower("video", VIDEO_MASKING_STRATEGIES, VIDEO_DECODER_MASKING_STRATEGIES)


@strict
class AVFMAEAudioConfig(_AVFMAETowerConfig):
    r"""
    Configuration of the AVF-MAE++ audio tower: the same fields as [`AVFMAEVideoConfig`] for the encoder and
    decoder, and the spectrogram geometry below. Defaults are the `base` size (architecture.md §2).

    Args:
        max_length (`int`, defaults to 256): fbank frames (time) per clip.
        num_mel_bins (`int`, defaults to 128): mel bins.
        patch_size (`int`, defaults to 16): square patch over (time, mel).
        region_size (`tuple[int, int]`, defaults to `(4, 4)`): (time, mel) of one local region, in tokens.
        mask_ratio (`float`, defaults to 0.8125): encoder mask ratio in pretraining (random masking).
        decoder_mask_ratio (`float`, defaults to 0.5): share of positions the decoder does *not* reconstruct.
    """

    model_type = "avfmae_audio"
    base_config_key = "audio_config"

    max_length: int = 256
    num_mel_bins: int = 128
    patch_size: int = 16
    num_channels: int = 1
    region_size: list[int] | tuple[int, int] = (4, 4)
    mask_ratio: float = 0.8125
    masking_strategy: str = "random"
    decoder_masking_strategy: str = "random"

    def token_grid(self) -> tuple[int, int, int]:
        """Token grid as `(1, time, mel)`: a spectrogram is a one-frame video, which lets both towers share code."""
        return (1, self.max_length // self.patch_size, self.num_mel_bins // self.patch_size)

    def region_grid_size(self) -> tuple[int, int, int]:
        return (1, *self.region_size)

    @property
    def patch_dim(self) -> int:
        return self.patch_size**2 * self.num_channels

    def validate_architecture(self):
        _check(len(self.region_size) == 2, f"audio region_size must have 2 entries, got {self.region_size}.")
        _check(
            self.max_length % self.patch_size == 0 and self.num_mel_bins % self.patch_size == 0,
            f"audio: max_length ({self.max_length}) and num_mel_bins ({self.num_mel_bins}) must be divisible by "
            f"patch_size ({self.patch_size}).",
        )
        _check(self.num_channels == 1, f"audio: spectrograms have one channel, got num_channels={self.num_channels}.")
        self._validate_tower("audio", AUDIO_MASKING_STRATEGIES, AUDIO_DECODER_MASKING_STRATEGIES)


@strict
class AVFMAEConfig(_AVFMAEConfigChecks, PreTrainedConfig):
    r"""
    Configuration of AVF-MAE++ ([`AVFMAEModel`], [`AVFMAEForPreTraining`], [`AVFMAEForVideoClassification`]).
    The defaults build the `base` size; [`~AVFMAEConfig.from_size`] gives `base`, `large` and `huge`.

    Args:
        video_config (`dict` or [`AVFMAEVideoConfig`], *optional*): the video tower.
        audio_config (`dict` or [`AVFMAEAudioConfig`], *optional*): the audio tower.
        use_audio (`bool`, defaults to `True`): `False` builds a video-only model (no audio tower, no fusion), as the
            paper fine-tunes for micro-expression datasets that have no audio.
        fusion_num_hidden_layers (`int`, defaults to 2): IAV-CLM fusion layers.
        fusion_num_attention_heads (`int`, defaults to 8): heads in every fusion attention.
        fusion_intermediate_size (`int`, defaults to 2048): hidden width of the fusion MLPs.
        fusion_drop_path_ratio (`float`, defaults to 0.5): the fusion module's own residual branches drop paths at
            this fraction of `drop_path_rate` (official value).
        layer_norm_eps (`float`, defaults to 1e-6): epsilon of the fusion LayerNorms and of the classifier's
            `fc_norm`.
        refinement_layer_norm_eps (`float`, defaults to 1e-5): epsilon of the iterative-refinement LayerNorm (the
            official code uses PyTorch's default there).
        drop_path_rate (`float`, defaults to 0.0): stochastic depth; 0.0 in the official pretraining, 0.1 in its
            fine-tuning.
        contrastive_temperature (`float`, defaults to 0.07): temperature of the inter-modal contrastive loss.
        contrastive_loss_weight (`float`, defaults to 0.0025): weight of the contrastive loss in the pretraining loss.
        norm_pix_loss (`bool`, defaults to `True`): normalise each target patch by its mean and std.
        use_frame_difference_target (`bool`, defaults to `True`): the later frames of every tubelet are
            reconstructed as differences to its first frame.
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal init of region and mask tokens.

    Example:

    ```python
    >>> from avfmae_hf import AVFMAEConfig, AVFMAEForVideoClassification
    >>> config = AVFMAEConfig.from_size("base", num_labels=7)
    >>> model = AVFMAEForVideoClassification(config)
    ```"""

    model_type = "avfmae"
    sub_configs_defaults = {"video_config": AVFMAEVideoConfig, "audio_config": AVFMAEAudioConfig}

    video_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    use_audio: bool = True
    fusion_num_hidden_layers: int = 2
    fusion_num_attention_heads: int = 8
    fusion_intermediate_size: int = 2048
    fusion_drop_path_ratio: float = 0.5
    layer_norm_eps: float = 1e-6
    refinement_layer_norm_eps: float = 1e-5
    drop_path_rate: float = 0.0
    contrastive_temperature: float = 0.07
    contrastive_loss_weight: float = 0.0025
    norm_pix_loss: bool = True
    use_frame_difference_target: bool = True
    initializer_range: float = 0.02

    @property
    def hidden_size(self) -> int:
        return self.video_config.hidden_size

    def validate_architecture(self):
        video, audio = self.video_config, self.audio_config
        _check(0.0 <= self.drop_path_rate < 1.0, f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")
        if not self.use_audio:
            return
        _check(
            video.hidden_size == audio.hidden_size,
            f"The fusion module mixes video and audio tokens, so video_config.hidden_size ({video.hidden_size}) "
            f"must equal audio_config.hidden_size ({audio.hidden_size}).",
        )
        _check(
            video.num_regions == audio.num_regions,
            f"Fine-tuning fuses one region token per region, so both towers need the same number of regions: video "
            f"has {video.num_regions} (grid {video.token_grid()} / region {tuple(video.region_size)}), audio "
            f"{audio.num_regions} (grid {audio.token_grid()[1:]} / region {tuple(audio.region_size)}).",
        )
        _check(
            len(video.intermediate_layer_indices) == len(audio.intermediate_layer_indices),
            f"The contrastive loss pairs video and audio intermediate layers one to one, so both towers need as many "
            f"intermediate_layer_indices: video {tuple(video.intermediate_layer_indices)}, audio "
            f"{tuple(audio.intermediate_layer_indices)}.",
        )
        _check(
            self.hidden_size % self.fusion_num_attention_heads == 0,
            f"hidden_size ({self.hidden_size}) must be divisible by fusion_num_attention_heads "
            f"({self.fusion_num_attention_heads}).",
        )
        _check(self.fusion_num_hidden_layers >= 1, "fusion_num_hidden_layers must be at least 1.")

    @property
    def size_name(self) -> str | None:
        """`"base"`, `"large"` or `"huge"` when the video tower has the width and depth of a released size."""
        return model_size_name(self.video_config.hidden_size, self.video_config.num_hidden_layers)

    @classmethod
    def from_size(cls, name: str, **overrides) -> "AVFMAEConfig":
        """Build the `base`, `large` or `huge` configuration of architecture.md §2.3.

        `overrides` are top-level fields (`num_labels=7`, `use_audio=False`, `drop_path_rate=0.1`, ...) or dicts of
        tower fields under `video_config` / `audio_config`, merged into the size's values.
        """
        if name not in MODEL_SIZES:
            raise ValueError(f"Unknown size {name!r}; choose one of {sorted(MODEL_SIZES)}.")
        size = MODEL_SIZES[name]
        hidden_size = size["hidden_size"]
        decoder_hidden_size = size["decoder_hidden_size"]
        tower = {
            **size,
            "intermediate_size": 4 * hidden_size,
            "decoder_intermediate_size": 4 * decoder_hidden_size,
        }
        video_config = {**tower, **dict(overrides.pop("video_config", None) or {})}
        audio_config = {**tower, **dict(overrides.pop("audio_config", None) or {})}
        fusion = {
            "fusion_num_attention_heads": size["num_attention_heads"],
            "fusion_intermediate_size": 4 * hidden_size,
        }
        return cls(video_config=video_config, audio_config=audio_config, **{**fusion, **overrides})


__all__ = [
    "AVFMAEAudioConfig",
    "AVFMAEConfig",
    "AVFMAEVideoConfig",
    "MODEL_SIZES",
    "model_size_name",
    "num_masked_tokens",
    "visible_tokens_per_region",
]
