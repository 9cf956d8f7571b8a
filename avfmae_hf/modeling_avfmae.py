# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""PyTorch AVF-MAE++ model (CVPR 2025): audio-visual masked autoencoder for affective face video.

Symbols used in shapes and comments: `B` batch, `T` frames, `N` tokens of a tower's grid, `N_vis` tokens the
encoder sees, `N_dec` positions a decoder reconstructs, `R` local regions, `K` local tokens per region, `L` encoder
layers, `C` encoder width, `D` decoder width. Section numbers refer to the architecture notes of this project
(`architecture.md`), which describe the official implementation this port reproduces.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, logging
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_avfmae import AVFMAEAudioConfig, AVFMAEConfig, AVFMAEVideoConfig, visible_tokens_per_region
from .masking_avfmae import AVFMAEDualMaskingGenerator


logger = logging.get_logger(__name__)

TowerConfig = AVFMAEVideoConfig | AVFMAEAudioConfig


@dataclass
class AVFMAEModelOutput(ModelOutput):
    r"""
    video_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
        Video tokens after the IAV-CLM fusion. Without masks these are the `R` region tokens of the last encoder
        layer; with masks (pretraining) the `N_vis` visible tokens, grouped region by region (architecture.md §4.1).
        In video-only mode: the last layer's region tokens after the encoder LayerNorm.
    audio_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`, *optional*):
        Audio tokens after the fusion, as for video. `None` in video-only mode.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, 2 * hidden_size)`):
        Concatenated token means of the fused video and audio tokens (`(batch_size, hidden_size)` in video-only
        mode); the classifier's `fc_norm` is applied by the head, not here.
    overall_token (`torch.FloatTensor` of shape `(batch_size, num_overall_tokens, hidden_size)`, *optional*):
        The overall audio-visual token(s) after iterative refinement (`R` without masks, 1 with masks).
    video_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        One tensor per encoder layer, after the encoder LayerNorm: the region tokens `(batch_size, R, hidden_size)`
        without masks, the visible tokens `(batch_size, N_vis, hidden_size)` with masks.
    audio_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        The same for the audio tower.
    attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True` with eager attention):
        Attention probabilities of every attention module of both towers and the fusion, in call order (per
        local-global layer: local, region, region-to-local, local-to-region); only the parts (towers, fusion) that
        run eager attention return theirs.
    """

    video_last_hidden_state: torch.FloatTensor | None = None
    audio_last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    overall_token: torch.FloatTensor | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AVFMAEForPreTrainingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`):
        `video_loss + audio_loss + contrastive_loss_weight * contrastive_loss` (architecture.md §7.4).
    video_loss, audio_loss (`torch.FloatTensor` of shape `()`):
        Mean squared reconstruction error over the decoded positions that the encoder did not see.
    contrastive_loss (`torch.FloatTensor` of shape `()`):
        Inter-modal contrastive loss summed over the intermediate layers (before weighting).
    video_logits (`torch.FloatTensor` of shape `(batch_size, N_dec, tubelet_size * patch_size**2 * num_channels)`):
        Video reconstructions of the decoded positions, in increasing token order; values per token in
        (frame-in-tubelet, row, column, channel) order, channel fastest.
    audio_logits (`torch.FloatTensor` of shape `(batch_size, N_dec, patch_size**2)`):
        Audio reconstructions of the decoded positions; values per token in (time, mel) order.
    video_targets, audio_targets (`torch.FloatTensor`, same shapes as the logits):
        The reconstruction targets the losses compare against.
    contrastive_logits (`tuple(torch.FloatTensor)` of shape `(batch_size, batch_size)`):
        Video-to-audio similarity logits, one per intermediate layer (audio-to-video is the transpose).
    video_bool_masked_pos, video_decoder_bool_masked_pos, audio_bool_masked_pos, audio_decoder_bool_masked_pos
    (`torch.BoolTensor` of shape `(batch_size, num_tokens)`):
        The masks used (given or drawn), True = hidden from the encoder / not reconstructed.
    video_hidden_states, audio_hidden_states, attentions:
        As in [`AVFMAEModelOutput`], for the masked (visible-token) pass.
    """

    loss: torch.FloatTensor | None = None
    video_loss: torch.FloatTensor | None = None
    audio_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    video_logits: torch.FloatTensor | None = None
    audio_logits: torch.FloatTensor | None = None
    video_targets: torch.FloatTensor | None = None
    audio_targets: torch.FloatTensor | None = None
    contrastive_logits: tuple[torch.FloatTensor, ...] | None = None
    video_bool_masked_pos: torch.BoolTensor | None = None
    video_decoder_bool_masked_pos: torch.BoolTensor | None = None
    audio_bool_masked_pos: torch.BoolTensor | None = None
    audio_decoder_bool_masked_pos: torch.BoolTensor | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AVFMAEVideoClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        Classification (cross-entropy), multi-label (BCE) or regression (MSE) loss, by `config.problem_type`.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Scores before softmax / sigmoid (or the regression outputs).
    pooler_output (`torch.FloatTensor` of shape `(batch_size, 2 * hidden_size)`):
        The features the classifier reads, after `fc_norm` (`(batch_size, hidden_size)` in video-only mode).
    video_hidden_states, audio_hidden_states, attentions:
        As in [`AVFMAEModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sinusoid table `(num_positions, dim)`: channel `j` of position `p` is `sin` (even `j`) or `cos`
    (odd `j`) of `p / 10000 ** (2 * (j // 2) / dim)`, interleaved, computed in float64 (architecture.md §3.7)."""
    positions = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    exponents = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim
    angles = positions / torch.pow(10000.0, exponents)
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table.to(torch.float32)


def partition_regions(
    tokens: torch.Tensor, grid: tuple[int, int, int], region_size: tuple[int, int, int]
) -> torch.Tensor:
    """Cuts the full token grid into windows (architecture.md §4.2).

    `tokens` `(B, N, C)` in raster order of `grid = (t, h, w)` becomes `(B, R, K, C)`, region index
    `(t_chunk * regions_h + h_chunk) * regions_w + w_chunk`, tokens of a region in (t, h, w) order.
    """
    batch_size, _, hidden_size = tokens.shape
    (grid_t, grid_h, grid_w), (region_t, region_h, region_w) = grid, region_size
    tokens = tokens.view(
        batch_size, grid_t // region_t, region_t, grid_h // region_h, region_h, grid_w // region_w, region_w, -1
    )
    tokens = tokens.permute(0, 1, 3, 5, 2, 4, 6, 7)
    return tokens.reshape(batch_size, -1, region_t * region_h * region_w, hidden_size)


def group_visible_tokens(
    visible_tokens: torch.Tensor, grid: tuple[int, int, int], region_size: tuple[int, int, int]
) -> torch.Tensor:
    """Groups the visible tokens of pretraining into regions by their order, as the official model does (§4.1).

    `visible_tokens` `(B, N_vis, C)` in increasing token index is viewed as `(time_regions, region_t,
    spatial_regions, k)` and regrouped to `(B, R, region_t * k, C)`: region `(i, j)` takes, from each time slice of
    time chunk `i`, the `j`-th run of `k` visible tokens. With random visible positions this is not a spatial window;
    the quirk is kept because the released checkpoints were trained with it.
    """
    batch_size, num_visible, hidden_size = visible_tokens.shape
    tokens_per_region = visible_tokens_per_region(grid, region_size, num_visible)
    region_t = region_size[0]
    run_length = tokens_per_region // region_t
    tokens = visible_tokens.view(batch_size, grid[0] // region_t, region_t, -1, run_length, hidden_size)
    tokens = tokens.permute(0, 1, 3, 2, 4, 5)
    return tokens.reshape(batch_size, -1, tokens_per_region, hidden_size)


def select_tokens(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The tokens of `tokens` `(B, N, ...)` where `keep` `(B, N)` is True, in increasing index: `(B, num_kept, ...)`
    (every sample keeps as many tokens)."""
    return tokens[keep].view(keep.shape[0], -1, *tokens.shape[2:])


def select_positions(table: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Rows of `table` `(N, C)` where `keep` `(B, N)` is True, in increasing index: `(B, num_kept, C)`."""
    return select_tokens(table.expand(keep.shape[0], -1, -1), keep)


def patchify(values: torch.Tensor, tubelet_size: int, patch_size: int) -> torch.Tensor:
    """Cuts `(B, T, channels, H, W)` into tubelets `(B, N, tubelet_size * patch_size**2, channels)`.

    Tokens are in (t, h, w) raster order; values inside a tubelet in (frame, row, column) order.
    """
    batch_size, num_frames, num_channels, height, width = values.shape
    values = values.view(
        batch_size,
        num_frames // tubelet_size,
        tubelet_size,
        num_channels,
        height // patch_size,
        patch_size,
        width // patch_size,
        patch_size,
    )
    # (B, t, h, w, frame, row, column, channels)
    values = values.permute(0, 1, 4, 6, 2, 5, 7, 3)
    return values.reshape(batch_size, -1, tubelet_size * patch_size**2, num_channels)


def unpatchify(patches: torch.Tensor, num_frames: int, height: int, width: int, patch_size: int) -> torch.Tensor:
    """Inverse of [`patchify`]: tubelets `(B, N, tubelet_size * patch_size**2, channels)` back to `(B, T, channels, H,
    W)`, the tubelet size following from `num_frames` and `N`."""
    batch_size, num_tokens, _, num_channels = patches.shape
    rows, columns = height // patch_size, width // patch_size
    num_tubelets = num_tokens // (rows * columns)
    patches = patches.view(
        batch_size, num_tubelets, rows, columns, num_frames // num_tubelets, patch_size, patch_size, num_channels
    )
    # (B, t, frame, channels, h, row, w, column)
    patches = patches.permute(0, 1, 4, 7, 2, 5, 3, 6)
    return patches.reshape(batch_size, num_frames, num_channels, height, width)


def project_patches(
    values: torch.Tensor, projection: nn.Conv2d | nn.Conv3d, tubelet_size: int, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """A patch embedding convolution (kernel = stride) of `values` `(B, T, channels, H, W)` as one matrix product over
    the patchified values, `(B, N, C)` in (t, h, w) raster order. Every token sees only its own patch, so this is the
    convolution's sum; CPUs compute it about 1.7x faster, forward and backward. With `keep` `(B, N)`, only the kept
    tokens are projected, `(B, num_kept, C)` in increasing index."""
    patch_size = projection.kernel_size[-1]
    patches = patchify(values, tubelet_size, patch_size).flatten(2)  # values in (frame, row, column, channel) order
    if keep is not None:
        patches = select_tokens(patches, keep)
    weight = projection.weight.movedim(1, -1).reshape(projection.out_channels, -1)  # the same order
    return F.linear(patches, weight, projection.bias)


def patch_statistics(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale (unbiased std + 1e-6) of every (token, channel) of `(B, N, P, channels)` over its `P` values,
    each `(B, N, 1, channels)`: what [`normalize_patches`] subtracts and divides by."""
    mean = patches.mean(dim=-2, keepdim=True)
    scale = patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
    return mean, scale


def normalize_patches(patches: torch.Tensor) -> torch.Tensor:
    """Normalises every (token, channel) of `(B, N, P, channels)` over its `P` values (unbiased std, +1e-6)."""
    mean, scale = patch_statistics(patches)
    return (patches - mean) / scale


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention on `(B, heads, N, head_dim)` inputs; returns `(B, N, heads, head_dim)` and the weights."""
    scores = torch.matmul(query * scaling, key.transpose(-2, -1))
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = scores.softmax(dim=-1)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class AVFMAEDropPath(nn.Module):
    """Stochastic depth: drops a residual branch for a whole row of the first dimension."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1.0 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
        return hidden_states * keep / keep_prob

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def drop_path_or_identity(drop_prob: float) -> nn.Module:
    return AVFMAEDropPath(drop_prob) if drop_prob > 0.0 else nn.Identity()


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether a forward hook may read `module`'s whole output; then nothing of it may be left uncomputed."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or torch.nn.modules.module._global_forward_hooks
        or torch.nn.modules.module._global_forward_pre_hooks
    )


def is_plain_layer(module: nn.Module, layer_type: type[nn.Module]) -> bool:
    """Whether `module` is exactly a `layer_type` that no hook watches, so that its weights may be used in another
    but equal computation (an adapter such as LoRA, a quantized layer or a hook gets the module's own forward)."""
    return type(module) is layer_type and not has_forward_hooks(module)


def attach_zero_gradients(tensor: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """`tensor` unchanged, with the parameters of `modules` in its graph so that backward gives them zero gradients.

    Used where a branch whose result nobody reads is skipped: the full computation gives its parameters exact zeros,
    and optimizers treat a zero gradient (weight decay, moment decay) differently from a missing one.
    """
    if not torch.is_grad_enabled():
        return tensor
    parameters = [parameter for module in modules for parameter in module.parameters() if parameter.requires_grad]
    if not parameters:
        return tensor
    zero = torch.stack([parameter.sum() for parameter in parameters]).sum() * 0
    return tensor + zero.to(tensor.dtype)


def linear_drop_path_rates(max_rate: float, num_layers: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to `max_rate` over `num_layers` layers."""
    if num_layers == 1:
        return [0.0]
    return [max_rate * index / (num_layers - 1) for index in range(num_layers)]


def positions_of(table: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The position table `(N, C)` for all tokens, or its rows `(B, num_kept, C)` for the tokens `keep` keeps."""
    return table if keep is None else select_positions(table, keep)


class AVFMAEVideoEmbeddings(nn.Module):
    """Tubelet embedding (Conv3d, kernel = stride = `(tubelet_size, patch_size, patch_size)`) plus the fixed sinusoid
    position table. Maps `pixel_values` `(B, T, channels, H, W)` to `(B, N, C)`, `N = (T / tubelet) (H / p) (W / p)`
    in (t, h, w) raster order."""

    def __init__(self, config: AVFMAEVideoConfig):
        super().__init__()
        self.config = config
        patch = (config.tubelet_size, config.patch_size, config.patch_size)
        self.projection = nn.Conv3d(config.num_channels, config.hidden_size, kernel_size=patch, stride=patch)
        self.register_buffer(
            "position_embeddings", sinusoid_position_table(config.num_tokens, config.hidden_size), persistent=False
        )

    def forward(self, pixel_values: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """With `keep` `(B, N)` (the visible tokens of pretraining), only the kept tokens are embedded: `(B,
        num_kept, C)`, in increasing index, the rows the full output has there."""
        expected = (self.config.num_frames, self.config.num_channels, self.config.image_size, self.config.image_size)
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must have shape (batch_size, num_frames, num_channels, height, width) = "
                f"(batch_size, {', '.join(map(str, expected))}) for this model, got {tuple(pixel_values.shape)}."
            )
        pixel_values = pixel_values.to(self.projection.weight.dtype)
        if is_plain_layer(self.projection, nn.Conv3d):
            embeddings = project_patches(pixel_values, self.projection, self.config.tubelet_size, keep)
        else:  # Conv3d wants (B, channels, T, H, W)
            embeddings = self.projection(pixel_values.permute(0, 2, 1, 3, 4)).flatten(2).transpose(1, 2)
            embeddings = embeddings if keep is None else select_tokens(embeddings, keep)
        return embeddings + positions_of(self.position_embeddings.to(embeddings.dtype), keep)


class AVFMAEAudioEmbeddings(nn.Module):
    """Patch embedding of the log-mel spectrogram (Conv2d, kernel = stride = `patch_size`) plus the fixed sinusoid
    position table. Maps `audio_values` `(B, 1, time, mel)` to `(B, N, C)`, `N = (time / p) (mel / p)`, time-major."""

    def __init__(self, config: AVFMAEAudioConfig):
        super().__init__()
        self.config = config
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.register_buffer(
            "position_embeddings", sinusoid_position_table(config.num_tokens, config.hidden_size), persistent=False
        )

    def forward(self, audio_values: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """With `keep` `(B, N)`, only the kept tokens are embedded (as in [`AVFMAEVideoEmbeddings`])."""
        expected = (self.config.num_channels, self.config.max_length, self.config.num_mel_bins)
        if audio_values.ndim != 4 or tuple(audio_values.shape[1:]) != expected:
            raise ValueError(
                f"audio_values must have shape (batch_size, 1, time, mel) = (batch_size, "
                f"{', '.join(map(str, expected))}) for this model, got {tuple(audio_values.shape)}."
            )
        audio_values = audio_values.to(self.projection.weight.dtype)
        if is_plain_layer(self.projection, nn.Conv2d):  # the spectrogram as one frame of one channel
            embeddings = project_patches(audio_values.unsqueeze(1), self.projection, tubelet_size=1, keep=keep)
        else:
            embeddings = self.projection(audio_values).flatten(2).transpose(1, 2)
            embeddings = embeddings if keep is None else select_tokens(embeddings, keep)
        return embeddings + positions_of(self.position_embeddings.to(embeddings.dtype), keep)


class AVFMAEAttention(nn.Module):
    """Multi-head attention with q and v biases and no k bias (§3.1–3.2). Self-attention when `context` is None,
    cross-attention to `context` otherwise.

    Maps `hidden_states` `(..., N, C)` (and `context` `(..., M, context_size)`) to `(..., N, C)`; any leading
    dimensions are flattened into the batch. `config` is the configuration whose `_attn_implementation` this
    attention runs with: the tower's for the encoder and decoder layers, the top-level one for the fusion.
    """

    def __init__(self, config: PreTrainedConfig, hidden_size: int, num_heads: int, context_size: int | None = None):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        context_size = context_size or hidden_size
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(context_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(context_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, context: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        is_cross_attention = context is not None
        context = hidden_states if context is None else context
        leading_shape = hidden_states.shape[:-2]
        hidden_states = hidden_states.reshape(-1, *hidden_states.shape[-2:])
        context = context.reshape(-1, *context.shape[-2:])
        folded_side = (
            self.cheaper_folded_side(hidden_states.shape[1], context.shape[1]) if is_cross_attention else None
        )
        if folded_side is not None and self.can_fold_projections():
            fold = self.query_side_folded if folded_side == "query" else self.context_side_folded
            attention_output = fold(hidden_states, context)
            return attention_output.view(*leading_shape, *attention_output.shape[-2:]), None
        # (B, heads, tokens, head_dim)
        query = self.q_proj(hidden_states).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        key = self.k_proj(context).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        value = self.v_proj(context).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attention_output, attention_weights = attention_interface(
            self, query, key, value, None, scaling=self.scaling, dropout=0.0, **kwargs
        )
        attention_output = self.o_proj(attention_output.flatten(-2))
        return attention_output.view(*leading_shape, *attention_output.shape[-2:]), attention_weights

    # Cross-attention between a long and a short sequence (16 x 8 region tokens against 800 local tokens and back, in
    # every encoder layer) spends most of its work projecting the long side. Attention is linear in the projected
    # queries, keys and values, so the projections of the long side can be moved onto the few tokens of the short
    # side: the same result, computed with `2 * heads * short / hidden_size` of the work on the long side.

    def cheaper_folded_side(self, num_queries: int, num_keys: int) -> str | None:
        """Which side's projections are cheaper folded onto the other side (`"query"` or `"context"`), or `None`
        when the usual computation is the cheapest; counted in multiply-adds of the matrix products."""
        hidden_size, context_size = self.q_proj.in_features, self.k_proj.in_features
        inner_size = self.num_heads * self.head_dim
        attention = 2 * num_queries * num_keys * inner_size
        folded_attention = 2 * num_queries * num_keys * self.num_heads * max(hidden_size, context_size)
        query_side = num_queries * inner_size * (hidden_size + self.o_proj.out_features)
        context_side = 2 * num_keys * inner_size * context_size
        usual = query_side + context_side + attention
        # folding the queries: q and o are applied to the keys and values instead (as many products as there are keys)
        query_folded = context_side + num_keys * inner_size * (hidden_size + self.o_proj.out_features)
        query_folded += folded_attention
        # folding the context: k and v are applied to the queries instead
        context_folded = query_side + 2 * num_queries * inner_size * context_size + folded_attention
        cheapest = min(usual, query_folded, context_folded)
        if cheapest == usual:
            return None
        return "query" if cheapest == query_folded else "context"

    def can_fold_projections(self) -> bool:
        """Folding reads the projection weights directly, so it is only done with plain linear layers that nothing
        watches (adapters such as LoRA, quantized layers or hooks get the usual computation)."""
        projections = (self.q_proj, self.k_proj, self.v_proj, self.o_proj)
        return not has_forward_hooks(self) and all(is_plain_layer(projection, nn.Linear) for projection in projections)

    def query_side_folded(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Cross-attention of many queries `hidden_states` `(B, N, C)` to few keys `context` `(B, M, C')`, without
        projecting the queries or their outputs: the score of query `x` for key `k` of head `h` is
        `x . (W_q[h]^T k) + b_q[h] . k`, and the output `sum_m p_m W_o[h] v_m + b_o`."""
        batch_size, num_keys = context.shape[0], context.shape[1]
        heads, head_dim = self.num_heads, self.head_dim
        key = self.k_proj(context).view(batch_size, num_keys, heads, head_dim) * self.scaling
        value = self.v_proj(context).view(batch_size, num_keys, heads, head_dim)
        q_weight = self.q_proj.weight.view(heads, head_dim, -1)
        # (B, heads * M, C): every key seen through the query projection
        folded_keys = torch.einsum("bmhd,hdc->bhmc", key, q_weight).flatten(1, 2)
        key_bias = torch.einsum("bmhd,hd->bhm", key, self.q_proj.bias.view(heads, head_dim)).flatten(1, 2)
        scores = torch.baddbmm(key_bias.unsqueeze(1), hidden_states, folded_keys.transpose(1, 2))
        probabilities = scores.view(batch_size, -1, heads, num_keys).softmax(dim=-1)
        # (B, heads * M, C): every value seen through its head's part of the output projection
        o_weight = self.o_proj.weight.view(-1, heads, head_dim)
        folded_values = torch.einsum("bmhd,chd->bhmc", value, o_weight).flatten(1, 2)
        return torch.baddbmm(self.o_proj.bias, probabilities.view(batch_size, -1, heads * num_keys), folded_values)

    def context_side_folded(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Cross-attention of few queries `hidden_states` `(B, M, C)` to many keys `context` `(B, N, C')`, without
        projecting the keys or values: the score of key `x` for query `q` of head `h` is `(W_k[h]^T q) . x` (keys
        have no bias), and since the weights sum to 1, the head's output is `W_v[h] (sum_n p_n x_n) + b_v[h]`."""
        batch_size, num_queries = hidden_states.shape[0], hidden_states.shape[1]
        heads, head_dim = self.num_heads, self.head_dim
        query = self.q_proj(hidden_states).view(batch_size, num_queries, heads, head_dim) * self.scaling
        k_weight = self.k_proj.weight.view(heads, head_dim, -1)
        # (B, heads * M, C'): every query seen through the key projection
        folded_queries = torch.einsum("bmhd,hdc->bhmc", query, k_weight).flatten(1, 2)
        probabilities = torch.bmm(folded_queries, context.transpose(1, 2)).softmax(dim=-1)
        # (B, heads, M, C'): the weighted mean of the raw context tokens for every head and query
        mean_context = torch.bmm(probabilities, context).view(batch_size, heads, num_queries, -1)
        v_weight = self.v_proj.weight.view(heads, head_dim, -1)
        value = torch.einsum("bhmc,hdc->bmhd", mean_context, v_weight) + self.v_proj.bias.view(heads, head_dim)
        return self.o_proj(value.reshape(batch_size, num_queries, heads * head_dim))

    def single_key_output(self, context: torch.Tensor) -> torch.Tensor:
        """The output for any query when `context` `(..., 1, context_size)` holds one token: its softmax weight is 1,
        so the output is that token's projected value, `(..., 1, C)`; queries and keys change nothing."""
        return self.o_proj(self.v_proj(context))


class AVFMAEMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class AVFMAELocalGlobalLayer(GradientCheckpointingLayer):
    """The local-global layer of both encoders (§3.6): MAE-DFER's LGI-Former block plus a fourth attention.

    Every region sequence is `[region token, K local tokens]`; the region tokens carry information
    between regions:

    1. local attention inside each region sequence;
    2. region attention among the `R` region tokens of a sample;
    3. region-to-local: every local token of the sample attends to the region tokens;
    4. local-to-region: every region token attends to all local tokens of the sample;
    5. MLP on all tokens.
    """

    def __init__(self, tower_config: TowerConfig, drop_path: float):
        super().__init__()
        hidden_size, eps = tower_config.hidden_size, tower_config.layer_norm_eps

        def attention() -> AVFMAEAttention:
            return AVFMAEAttention(tower_config, hidden_size, tower_config.num_attention_heads)

        self.local_attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.local_attention = attention()
        self.region_attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.region_attention = attention()
        self.region_to_local_attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.region_to_local_context_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.region_to_local_attention = attention()
        self.local_to_region_attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.local_to_region_context_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.local_to_region_attention = attention()
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = AVFMAEMLP(hidden_size, tower_config.intermediate_size, tower_config.hidden_act)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(
        self, hidden_states: torch.Tensor, read_tokens: str = "all", **kwargs: Unpack[TransformersKwargs]
    ) -> torch.Tensor:
        """`hidden_states` `(B, R, 1 + K, C)`, region token first in every region; returns the same shape.

        `read_tokens` names what the caller reads of the output; the rest is not computed: `"local"` returns only the
        local tokens `(B, R, K, C)` (no local-to-region attention, no MLP on the region tokens), `"region"` only the
        region tokens `(B, R, 1, C)` (no MLP on the local tokens). The returned values are the same as in `"all"`.
        """
        batch_size, num_regions, sequence_length, hidden_size = hidden_states.shape
        # 1. local attention, batched over all B * R region sequences
        sequences = hidden_states.view(batch_size * num_regions, sequence_length, hidden_size)
        attention_output, _ = self.local_attention(self.local_attention_norm(sequences), **kwargs)
        sequences = sequences + self.drop_path(attention_output)
        sequences = sequences.view(batch_size, num_regions, sequence_length, hidden_size)
        # one split rather than two slices: its backward concatenates the two gradients instead of zero-filling a
        # full-size gradient for each slice and copying into it
        region_tokens, local_tokens = sequences.split([1, sequence_length - 1], dim=2)
        region_tokens = region_tokens.squeeze(2)
        local_tokens = local_tokens.reshape(batch_size, -1, hidden_size)

        # 2. the region tokens exchange information across regions
        attention_output, _ = self.region_attention(self.region_attention_norm(region_tokens), **kwargs)
        region_tokens = region_tokens + self.drop_path(attention_output)
        if read_tokens == "local":
            # the parameters of the skipped step 4 get their zero gradients through the (small) region tokens
            region_tokens = attach_zero_gradients(
                region_tokens,
                self.local_to_region_attention_norm,
                self.local_to_region_context_norm,
                self.local_to_region_attention,
            )

        # 3. every local token reads the region tokens
        attention_output, _ = self.region_to_local_attention(
            self.region_to_local_attention_norm(local_tokens),
            context=self.region_to_local_context_norm(region_tokens),
            **kwargs,
        )
        local_tokens = local_tokens + self.drop_path(attention_output)

        if read_tokens == "local":
            # steps 4 and 5 of the region tokens are left out; the draw of step 4's drop-path is still made, so that
            # the random stream (and the MLP's drop-path below) stays that of the full layer
            if self.training and isinstance(self.drop_path, AVFMAEDropPath):
                self.drop_path(region_tokens)
            local_tokens = local_tokens.view(batch_size * num_regions, -1, hidden_size)
            local_tokens = local_tokens + self.drop_path(self.mlp(self.mlp_norm(local_tokens)))
            return local_tokens.view(batch_size, num_regions, -1, hidden_size)

        # 4. every region token reads all local tokens of its sample
        attention_output, _ = self.local_to_region_attention(
            self.local_to_region_attention_norm(region_tokens),
            context=self.local_to_region_context_norm(local_tokens),
            **kwargs,
        )
        region_tokens = region_tokens + self.drop_path(attention_output)

        if read_tokens == "region":
            # one row per region sequence, as in the full MLP below, so drop-path draws the same numbers
            region_tokens = region_tokens.reshape(batch_size * num_regions, 1, hidden_size)
            region_tokens = region_tokens + self.drop_path(self.mlp(self.mlp_norm(region_tokens)))
            return region_tokens.view(batch_size, num_regions, 1, hidden_size)

        # 5. MLP on every token of every region sequence
        sequences = torch.cat(
            [region_tokens.unsqueeze(2), local_tokens.view(batch_size, num_regions, -1, hidden_size)], dim=2
        ).view(batch_size * num_regions, sequence_length, hidden_size)
        sequences = sequences + self.drop_path(self.mlp(self.mlp_norm(sequences)))
        return sequences.view(batch_size, num_regions, sequence_length, hidden_size)


class AVFMAELocalGlobalEncoder(nn.Module):
    """The encoder of one tower: learned region tokens, local-global layers and a final LayerNorm.

    Without a mask it runs on the whole token grid cut into true windows (fine-tuning); with a mask on the visible
    tokens, grouped by order (pretraining, §4.1).
    """

    def __init__(self, config: AVFMAEConfig, tower_config: TowerConfig):
        super().__init__()
        self.tower_config = tower_config
        self.region_tokens = nn.Parameter(torch.zeros(tower_config.num_regions, tower_config.hidden_size))
        drop_path_rates = linear_drop_path_rates(config.drop_path_rate, tower_config.num_hidden_layers)
        self.layers = nn.ModuleList([AVFMAELocalGlobalLayer(tower_config, rate) for rate in drop_path_rates])
        self.layernorm = nn.LayerNorm(tower_config.hidden_size, eps=tower_config.layer_norm_eps)

    def forward(
        self,
        embeddings: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        skip_unread: bool = True,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, ...]:
        """Runs every layer on `embeddings`: those of all tokens `(B, N, C)` without a mask; with `bool_masked_pos`
        `(B, N)`, those of the visible tokens only `(B, N_vis, C)`, in increasing index.

        Returns one tensor per layer, after `layernorm`: the region tokens `(B, R, C)` without a mask, the local
        tokens `(B, N_vis, C)` (region by region) with `bool_masked_pos` `(B, N)`. With `skip_unread`, the last layer
        computes only those tokens (unless a forward hook watches it); the results are the same.
        """
        grid, region_size = self.tower_config.token_grid(), self.tower_config.region_grid_size()
        batch_size, _, hidden_size = embeddings.shape
        if bool_masked_pos is None:
            local_tokens = partition_regions(embeddings, grid, region_size)
        else:
            local_tokens = group_visible_tokens(embeddings, grid, region_size)
        region_tokens = self.region_tokens.to(embeddings.dtype).expand(batch_size, -1, -1).unsqueeze(2)
        hidden_states = torch.cat([region_tokens, local_tokens], dim=2)

        layer_outputs = []
        last_layer = self.layers[-1]
        for layer in self.layers:
            read_tokens = "all"
            if layer is last_layer and skip_unread and not has_forward_hooks(layer):
                read_tokens = "region" if bool_masked_pos is None else "local"
            hidden_states = layer(hidden_states, read_tokens=read_tokens, **kwargs)
            if bool_masked_pos is None:
                layer_outputs.append(self.layernorm(hidden_states[:, :, 0]))
            else:
                local_tokens = hidden_states if read_tokens == "local" else hidden_states[:, :, 1:]
                layer_outputs.append(self.layernorm(local_tokens.reshape(batch_size, -1, hidden_size)))
        return tuple(layer_outputs)


class AVFMAEFusionBranch(nn.Module):
    """One modality's half of a fusion layer (§6.1): an intra-modal path (self-attention + MLP) and a cross-modal
    path (attention to the other modality + MLP), merged by two independent sigmoid gates and a LayerNorm."""

    def __init__(self, config: AVFMAEConfig, drop_path: float):
        super().__init__()
        hidden_size, eps = config.hidden_size, config.layer_norm_eps

        def attention() -> AVFMAEAttention:
            return AVFMAEAttention(config, hidden_size, config.fusion_num_attention_heads)

        self.self_attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.self_attention = attention()
        self.self_mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.self_mlp = AVFMAEMLP(hidden_size, config.fusion_intermediate_size)
        self.cross_attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.cross_context_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.cross_attention = attention()
        self.cross_mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.cross_mlp = AVFMAEMLP(hidden_size, config.fusion_intermediate_size)
        self.self_gate = nn.Linear(2 * hidden_size, hidden_size)
        self.cross_gate = nn.Linear(2 * hidden_size, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(
        self, hidden_states: torch.Tensor, other_modality: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> torch.Tensor:
        """`hidden_states` `(B, N, C)`, `other_modality` `(B, M, C)` → `(B, N, C)`."""
        attention_output, _ = self.self_attention(self.self_attention_norm(hidden_states), **kwargs)
        intra_modal = hidden_states + self.drop_path(attention_output)
        intra_modal = intra_modal + self.drop_path(self.self_mlp(self.self_mlp_norm(intra_modal)))

        attention_output, _ = self.cross_attention(
            self.cross_attention_norm(hidden_states), context=self.cross_context_norm(other_modality), **kwargs
        )
        cross_modal = hidden_states + self.drop_path(attention_output)
        cross_modal = cross_modal + self.drop_path(self.cross_mlp(self.cross_mlp_norm(cross_modal)))

        both = torch.cat([intra_modal, cross_modal], dim=-1)
        merged = torch.sigmoid(self.self_gate(both)) * intra_modal + torch.sigmoid(self.cross_gate(both)) * cross_modal
        return self.output_norm(merged)


class AVFMAEFusionLayer(GradientCheckpointingLayer):
    """One IAV-CLM fusion layer: the video and audio branches, both computed from the layer inputs."""

    def __init__(self, config: AVFMAEConfig, drop_path: float):
        super().__init__()
        self.video_branch = AVFMAEFusionBranch(config, drop_path)
        self.audio_branch = AVFMAEFusionBranch(config, drop_path)

    def forward(
        self, video_states: torch.Tensor, audio_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.video_branch(video_states, audio_states, **kwargs),
            self.audio_branch(audio_states, video_states, **kwargs),
        )


class AVFMAERefinementProjection(nn.Module):
    """Pointwise Conv1d + BatchNorm1d + PReLU over the channels of `(B, M, C)` tokens (§6.2)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=1)
        self.batch_norm = nn.BatchNorm1d(hidden_size)
        self.activation = nn.PReLU()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # BatchNorm1d normalises the channel axis of (B, C, M)
        if is_plain_layer(self.conv, nn.Conv1d):  # a pointwise convolution is a linear layer, and faster as one
            projected = F.linear(tokens, self.conv.weight.squeeze(-1), self.conv.bias).transpose(1, 2)
        else:
            projected = self.conv(tokens.transpose(1, 2))
        return self.activation(self.batch_norm(projected)).transpose(1, 2)


class AVFMAEIterativeRefinement(nn.Module):
    """Refines the overall audio-visual token(s) after every fusion layer (§6.2): the overall tokens read the
    audio and the video tokens with parameter-free attention, each reading goes through its own refinement
    projection, and the sum is normalised."""

    def __init__(self, config: AVFMAEConfig):
        super().__init__()
        self.audio_projection = AVFMAERefinementProjection(config.hidden_size)
        self.video_projection = AVFMAERefinementProjection(config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.refinement_layer_norm_eps)

    @staticmethod
    def read(queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Parameter-free attention: `softmax(queries tokensᵀ / sqrt(C)) tokens`, `(B, M, C)` from `(B, N, C)`."""
        scores = torch.matmul(queries, tokens.transpose(1, 2)) / math.sqrt(queries.shape[-1])
        return torch.matmul(scores.softmax(dim=-1), tokens)

    def forward(self, overall: torch.Tensor, video_states: torch.Tensor, audio_states: torch.Tensor) -> torch.Tensor:
        audio_reading = self.audio_projection(self.read(overall, audio_states))
        video_reading = self.video_projection(self.read(overall, video_states))
        return self.layernorm(overall + audio_reading + video_reading)


class AVFMAEStageAggregation(nn.Module):
    """Merges one modality's outputs of all fusion layers (§6.3): self-attention across the stages of every token,
    an MLP, then a sigmoid-weighted sum over stages."""

    def __init__(self, config: AVFMAEConfig, drop_path: float):
        super().__init__()
        hidden_size, eps = config.hidden_size, config.layer_norm_eps
        self.attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attention = AVFMAEAttention(config, hidden_size, config.fusion_num_attention_heads)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = AVFMAEMLP(hidden_size, config.fusion_intermediate_size)
        self.stage_gate = nn.Linear(hidden_size, 1)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, stages: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        """`stages` `(B, N, num_stages, C)` → `(B, N, C)`."""
        batch_size, num_tokens, num_stages, hidden_size = stages.shape
        stages = stages.reshape(batch_size * num_tokens, num_stages, hidden_size)
        attention_output, _ = self.attention(self.attention_norm(stages), **kwargs)
        stages = stages + self.drop_path(attention_output)
        stages = stages + self.drop_path(self.mlp(self.mlp_norm(stages)))
        merged = (torch.sigmoid(self.stage_gate(stages)) * stages).sum(dim=1)
        return merged.view(batch_size, num_tokens, hidden_size)


class AVFMAEIterativeCorrelationModule(nn.Module):
    """IAV-CLM, the audio-visual fusion of AVF-MAE++ (§6).

    Fusion layers exchange information between the video and the audio tokens while the overall token(s) are
    refined after every layer; the per-layer outputs of each modality are then aggregated, read the refined overall
    token(s) through one shared cross-attention, and pass an MLP. There is no final LayerNorm.
    """

    def __init__(self, config: AVFMAEConfig):
        super().__init__()
        hidden_size, eps = config.hidden_size, config.layer_norm_eps
        layer_rates = linear_drop_path_rates(config.drop_path_rate, config.fusion_num_hidden_layers)
        module_rate = config.fusion_drop_path_ratio * config.drop_path_rate
        self.layers = nn.ModuleList([AVFMAEFusionLayer(config, rate) for rate in layer_rates])
        self.overall_projection = nn.Linear(2 * hidden_size, hidden_size)
        self.refinement = AVFMAEIterativeRefinement(config)
        self.video_aggregation = AVFMAEStageAggregation(config, module_rate)
        self.audio_aggregation = AVFMAEStageAggregation(config, module_rate)
        self.video_overall_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.audio_overall_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.overall_context_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.overall_attention = AVFMAEAttention(config, hidden_size, config.fusion_num_attention_heads)
        self.video_output_mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.video_output_mlp = AVFMAEMLP(hidden_size, config.fusion_intermediate_size)
        self.audio_output_mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.audio_output_mlp = AVFMAEMLP(hidden_size, config.fusion_intermediate_size)
        self.drop_path = drop_path_or_identity(module_rate)

    def forward(
        self,
        video_states: torch.Tensor,
        audio_states: torch.Tensor,
        overall: torch.Tensor,
        skip_unread: bool = True,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`video_states` `(B, N_v, C)`, `audio_states` `(B, N_a, C)`, `overall` `(B, M, 2C)`.

        Returns the fused video `(B, N_v, C)` and audio `(B, N_a, C)` tokens and the refined overall `(B, M, C)`.
        With `skip_unread` and a single overall token (pretraining), the final cross-attention computes only its
        value side, which is all its output depends on.
        """
        overall = self.overall_projection(overall)
        video_stages, audio_stages = [], []
        for layer in self.layers:
            video_states, audio_states = layer(video_states, audio_states, **kwargs)
            overall = self.refinement(overall, video_states, audio_states)
            video_stages.append(video_states)
            audio_stages.append(audio_states)

        video_states = self.video_aggregation(torch.stack(video_stages, dim=2), **kwargs)
        audio_states = self.audio_aggregation(torch.stack(audio_stages, dim=2), **kwargs)

        overall_context = self.overall_context_norm(overall)
        if skip_unread and overall_context.shape[1] == 1:
            # one key: every softmax weight is 1, so the queries (and their norms) change nothing
            attention_output = attach_zero_gradients(
                self.overall_attention.single_key_output(overall_context),
                self.overall_attention.q_proj,
                self.overall_attention.k_proj,
                self.video_overall_norm,
                self.audio_overall_norm,
            )
            # drop-path draws one number per sample, as for the full (B, N, C) output
            video_states = video_states + self.drop_path(attention_output)
            audio_states = audio_states + self.drop_path(attention_output)
        else:
            attention_output, _ = self.overall_attention(
                self.video_overall_norm(video_states), context=overall_context, **kwargs
            )
            video_states = video_states + self.drop_path(attention_output)
            attention_output, _ = self.overall_attention(
                self.audio_overall_norm(audio_states), context=overall_context, **kwargs
            )
            audio_states = audio_states + self.drop_path(attention_output)

        video_states = video_states + self.drop_path(self.video_output_mlp(self.video_output_mlp_norm(video_states)))
        audio_states = audio_states + self.drop_path(self.audio_output_mlp(self.audio_output_mlp_norm(audio_states)))
        return video_states, audio_states, overall


class AVFMAEDecoderLayer(GradientCheckpointingLayer):
    """Pretraining decoder layer (§3.4–3.5): optional cross-attention to an encoder skip feature, then
    self-attention and MLP, all pre-norm."""

    def __init__(self, tower_config: TowerConfig, drop_path: float, has_cross_attention: bool):
        super().__init__()
        hidden_size, eps = tower_config.decoder_hidden_size, tower_config.layer_norm_eps

        def attention() -> AVFMAEAttention:
            return AVFMAEAttention(tower_config, hidden_size, tower_config.decoder_num_attention_heads)

        if has_cross_attention:
            self.cross_attention_norm = nn.LayerNorm(hidden_size, eps=eps)
            self.cross_context_norm = nn.LayerNorm(hidden_size, eps=eps)
            self.cross_attention = attention()
        else:
            self.cross_attention = None
        self.attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attention = attention()
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = AVFMAEMLP(hidden_size, tower_config.decoder_intermediate_size, tower_config.hidden_act)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor | None = None,
        num_read: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        """`hidden_states` `(B, N, C)`; returns `(B, N, C)`, or with `num_read` the last `num_read` tokens only: the
        others are then keys and values of the self-attention but get no query, no output projection and no MLP."""
        if self.cross_attention is not None:
            attention_output, _ = self.cross_attention(
                self.cross_attention_norm(hidden_states), context=self.cross_context_norm(context), **kwargs
            )
            hidden_states = hidden_states + self.drop_path(attention_output)
        normed = self.attention_norm(hidden_states)
        if num_read is None:
            attention_output, _ = self.attention(normed, **kwargs)
        else:
            hidden_states = hidden_states[:, -num_read:]
            attention_output, _ = self.attention(normed[:, -num_read:], context=normed, **kwargs)
        hidden_states = hidden_states + self.drop_path(attention_output)
        return hidden_states + self.drop_path(self.mlp(self.mlp_norm(hidden_states)))


class AVFMAEDecoder(nn.Module):
    """The pretraining decoder of one tower (§7.1–7.2).

    Projects the fused visible tokens to the decoder width, appends a mask token for every position to reconstruct,
    adds decoder position embeddings, runs a self-attention layer and then cross-attention layers that read the
    encoder's intermediate features (deepest first), and predicts the patch values of the reconstructed positions.
    """

    def __init__(self, config: AVFMAEConfig, tower_config: TowerConfig):
        super().__init__()
        hidden_size = tower_config.decoder_hidden_size
        self.encoder_to_decoder = nn.Linear(tower_config.hidden_size, hidden_size, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.register_buffer(
            "position_embeddings", sinusoid_position_table(tower_config.num_tokens, hidden_size), persistent=False
        )
        drop_path_rates = linear_drop_path_rates(config.drop_path_rate, tower_config.decoder_num_hidden_layers)
        self.layers = nn.ModuleList(
            [
                AVFMAEDecoderLayer(tower_config, rate, has_cross_attention=index > 0)
                for index, rate in enumerate(drop_path_rates)
            ]
        )
        self.layernorm = nn.LayerNorm(hidden_size, eps=tower_config.layer_norm_eps)
        self.head = nn.Linear(hidden_size, tower_config.patch_dim)

    def forward(
        self,
        visible_tokens: torch.Tensor,
        skip_features: tuple[torch.Tensor, ...],
        bool_masked_pos: torch.BoolTensor,
        decoder_bool_masked_pos: torch.BoolTensor,
        skip_unread: bool = True,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        """
        `visible_tokens` `(B, N_vis, C)` fused encoder output; `skip_features` one `(B, N_vis, C)` per cross-attention
        layer (shallowest first); the encoder and decoder masks `(B, N)`. Returns `(B, N_dec, patch_dim)` for the
        positions where `decoder_bool_masked_pos` is False, in increasing order. With `skip_unread`, the last layer
        computes only the tokens the head reads (unless a forward hook watches it); the results are the same.
        """
        table = self.position_embeddings.to(visible_tokens.dtype)
        # Visible tokens get the rows of their positions in increasing index order; for video the encoder output is
        # grouped region by region, so rows and tokens are mismatched exactly as in the official model (§4.1).
        visible_positions = select_positions(table, ~bool_masked_pos)
        decoded_positions = select_positions(table, ~decoder_bool_masked_pos)
        num_decoded = decoded_positions.shape[1]
        hidden_states = torch.cat(
            [
                self.encoder_to_decoder(visible_tokens) + visible_positions,
                self.mask_token.to(table.dtype) + decoded_positions,
            ],
            dim=1,
        )
        contexts = [None] + list(reversed([self.encoder_to_decoder(f) + visible_positions for f in skip_features]))
        last_layer = self.layers[-1]
        for layer, context in zip(self.layers, contexts, strict=True):
            # the head reads the decoded tokens of the last layer only
            num_read = num_decoded if layer is last_layer and skip_unread and not has_forward_hooks(layer) else None
            hidden_states = layer(hidden_states, context, num_read=num_read, **kwargs)
        return self.head(self.layernorm(hidden_states[:, -num_decoded:]))


class AVFMAEPreTrainedModel(PreTrainedModel):
    config: AVFMAEConfig
    base_model_prefix = "avfmae"
    main_input_name = "pixel_values"
    input_modalities = ("video", "audio")
    supports_gradient_checkpointing = True
    _no_split_modules = ["AVFMAELocalGlobalLayer", "AVFMAEFusionLayer", "AVFMAEDecoderLayer"]
    _supports_sdpa = True
    _can_record_outputs = {"attentions": AVFMAEAttention}

    def __init__(self, config: AVFMAEConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        # The attentions of each tower (encoder and decoder) read the tower's sub-config, the fusion the top-level
        # one, so `attn_implementation={"video_config": ..., "audio_config": ..., "": ...}` picks one per part. A
        # tower without its own choice follows the top-level one.
        for key in config.sub_configs:
            tower_config = getattr(config, key)
            requested = tower_config._attn_implementation
            tower_config._attn_implementation_internal = (
                self.config._attn_implementation
                if requested is None
                else self.get_correct_attn_implementation(requested, is_init_check=True)
            )

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False):
        """Sets the attention implementation of every part: a string for all of them, or a dict with any of
        `"video_config"` and `"audio_config"` (the towers) and `""` (the fusion); parts not named keep theirs."""
        requested = (
            attn_implementation
            if isinstance(attn_implementation, dict)
            else dict.fromkeys(("", *self.config.sub_configs), attn_implementation)
        )
        # The towers are not sub-models of their own, so their choices are checked against this model here
        # (transformers would set them unchecked, with a warning).
        for key in self.config.sub_configs:
            if key in requested:
                tower_config = getattr(self.config, key)
                implementation = requested[key]
                if isinstance(implementation, dict):
                    implementation = implementation.get("", tower_config._attn_implementation)
                tower_config._attn_implementation_internal = self.get_correct_attn_implementation(implementation)
        super().set_attn_implementation(
            {"": requested.get("", self.config._attn_implementation)}, allow_all_kernels=allow_all_kernels
        )

    def get_input_embeddings(self) -> nn.Module:
        """The video tower's patch embedding: the embedding of `pixel_values`, the main input (the audio tower's is
        `base_model.audio_embeddings`). There is no token vocabulary, so nothing can be resized."""
        return self.base_model.video_embeddings

    def set_input_embeddings(self, value: nn.Module):
        self.base_model.video_embeddings = value

    def tower_embeddings(self) -> list[nn.Module]:
        """The input embedding of every tower the model has: video, then audio unless the model is video-only."""
        base_model = self.base_model
        return [base_model.video_embeddings] + ([base_model.audio_embeddings] if self.config.use_audio else [])

    def enable_input_require_grads(self):
        """Makes the output of every tower's input embedding require gradients, so that adapters inside frozen,
        reentrant-checkpointed layers still get gradients. `get_input_embeddings` names one module (the video
        tower's), which would leave the audio tower's checkpointed layers without a gradient."""

        def make_output_require_grad(module, inputs, output):
            output.requires_grad_(True)

        self._require_grads_hooks = [
            embeddings.register_forward_hook(make_output_require_grad) for embeddings in self.tower_embeddings()
        ]
        # transformers keeps the first hook under its former name too, for code that still reads it
        self._require_grads_hook = self._require_grads_hooks[0]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """Initialisation of the official pretraining model (architecture.md §13)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            init_like_pytorch_default(module)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.PReLU):
            init.constant_(module.weight, 0.25)
        elif isinstance(module, AVFMAELocalGlobalEncoder):
            init.trunc_normal_(module.region_tokens, std=std, a=-std, b=std)
        elif isinstance(module, (AVFMAEVideoEmbeddings, AVFMAEAudioEmbeddings)):
            init.copy_(module.position_embeddings, sinusoid_position_table(*module.position_embeddings.shape))
        elif isinstance(module, AVFMAEDecoder):
            init.copy_(module.position_embeddings, sinusoid_position_table(*module.position_embeddings.shape))
            init.trunc_normal_(module.mask_token, std=std, a=-std, b=std)
            # The official top-level model never re-initialises this projection: PyTorch's default stays.
            init_like_pytorch_default(module.encoder_to_decoder)
        elif isinstance(module, AVFMAEModel) and module.video_layer_weights is not None:
            init.constant_(module.video_layer_weights, 1.0 / module.video_layer_weights.numel())
            init.constant_(module.audio_layer_weights, 1.0 / module.audio_layer_weights.numel())


def init_like_pytorch_default(module: nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d) -> None:
    """PyTorch's own `reset_parameters` for linear and convolution layers, through the loading-aware helpers."""
    init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    if module.bias is not None:
        fan_in = module.weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(module.bias, -bound, bound)


def check_mask(name: str, mask: torch.Tensor, batch_size: int, num_tokens: int) -> torch.BoolTensor:
    if mask.shape != (batch_size, num_tokens):
        raise ValueError(f"{name} must have shape (batch_size, {num_tokens}), got {tuple(mask.shape)}.")
    mask = mask.bool()
    counts = (~mask).sum(dim=1)
    if (counts != counts[0]).any():
        raise ValueError(
            f"{name} must leave the same number of tokens per sample; got {counts.tolist()} (True = masked)."
        )
    return mask


class AVFMAEModel(AVFMAEPreTrainedModel):
    """The AVF-MAE++ backbone: video and audio towers (embeddings + local-global encoder) and the IAV-CLM fusion.

    Without masks (fine-tuning and inference) every token is encoded in true spatial regions; the overall token of
    each region is the concatenation of the layer-weighted video and audio region tokens (§8), and the fusion runs on
    the last layer's region tokens. With masks (pretraining) only the visible tokens are encoded and the overall
    token is the concatenation of the video and audio token means.
    """

    def __init__(self, config: AVFMAEConfig, add_layer_weights: bool = True):
        r"""
        add_layer_weights (`bool`, *optional*, defaults to `True`):
            Whether to create the learned per-layer weights that build the overall token in the unmasked path. The
            pretraining model does not use them (it has the masked path only) and leaves them out.
        """
        super().__init__(config)
        self.video_embeddings = AVFMAEVideoEmbeddings(config.video_config)
        self.video_encoder = AVFMAELocalGlobalEncoder(config, config.video_config)
        self.video_layer_weights = self.audio_layer_weights = None
        if config.use_audio:
            self.audio_embeddings = AVFMAEAudioEmbeddings(config.audio_config)
            self.audio_encoder = AVFMAELocalGlobalEncoder(config, config.audio_config)
            self.fusion = AVFMAEIterativeCorrelationModule(config)
            if add_layer_weights:
                self.video_layer_weights = nn.Parameter(torch.zeros(config.video_config.num_hidden_layers))
                self.audio_layer_weights = nn.Parameter(torch.zeros(config.audio_config.num_hidden_layers))
        self.post_init()

    @staticmethod
    def visible_embeddings(
        embeddings: nn.Module, values: torch.Tensor, bool_masked_pos: torch.BoolTensor | None
    ) -> torch.Tensor:
        """The embeddings the encoder reads: of every token, or with a mask of the visible tokens only, which are
        the only ones embedded then (unless a forward hook watches the embeddings, which then see every token)."""
        if bool_masked_pos is None:
            return embeddings(values)
        if has_forward_hooks(embeddings):
            return select_tokens(embeddings(values), ~bool_masked_pos)
        return embeddings(values, keep=~bool_masked_pos)

    @staticmethod
    def weighted_layer_sum(layer_states: tuple[torch.Tensor, ...], weights: torch.Tensor) -> torch.Tensor:
        """`sum_l softmax(weights)_l * layer_states[l]`, each `(B, R, C)`."""
        return torch.stack(layer_states, dim=-1) @ weights.softmax(dim=0).to(layer_states[0].dtype)

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        audio_values: torch.FloatTensor | None = None,
        video_bool_masked_pos: torch.BoolTensor | None = None,
        audio_bool_masked_pos: torch.BoolTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AVFMAEModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Face frames, ImageNet-normalised (see [`AVFMAEProcessor`]).
        audio_values (`torch.FloatTensor` of shape `(batch_size, 1, max_length, num_mel_bins)`, *optional*):
            Normalised Kaldi log-mel spectrogram (see [`AVFMAEFeatureExtractor`]). Required unless
            `config.use_audio` is False.
        video_bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_video_tokens)`, *optional*):
            Pretraining encoder mask, True = hidden. Every sample must hide the same number of tokens, and the
            count must fit the region grouping (see [`AVFMAEConfig`]).
        audio_bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_audio_tokens)`, *optional*):
            The same for audio; give both masks or neither.

        Example:

        ```python
        >>> import torch
        >>> from avfmae_hf import AVFMAEConfig, AVFMAEModel
        >>> model = AVFMAEModel(AVFMAEConfig()).eval()
        >>> outputs = model(torch.randn(1, 16, 3, 160, 160), torch.randn(1, 1, 256, 128))
        >>> outputs.pooler_output.shape
        torch.Size([1, 1024])
        ```
        """
        output_hidden_states = kwargs.pop("output_hidden_states", None)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        output_attentions = kwargs.pop("output_attentions", None)
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        # every attention's weights are returned when asked for, so no attention may be skipped then
        skip_unread = not output_attentions
        use_audio = self.config.use_audio
        if use_audio and audio_values is None:
            raise ValueError(
                "This model fuses video and audio: pass audio_values, or use a config with use_audio=False."
            )
        if not use_audio and (audio_values is not None or audio_bool_masked_pos is not None):
            raise ValueError("This model is video-only (config.use_audio=False): it takes no audio inputs.")
        masked = video_bool_masked_pos is not None
        if use_audio and masked != (audio_bool_masked_pos is not None):
            raise ValueError("Pass both video_bool_masked_pos and audio_bool_masked_pos (pretraining) or neither.")

        batch_size = pixel_values.shape[0]
        if masked:
            video_bool_masked_pos = check_mask(
                "video_bool_masked_pos", video_bool_masked_pos, batch_size, self.config.video_config.num_tokens
            )
        video_embeddings = self.visible_embeddings(self.video_embeddings, pixel_values, video_bool_masked_pos)
        video_layers = self.video_encoder(video_embeddings, video_bool_masked_pos, skip_unread=skip_unread, **kwargs)

        if not use_audio:
            video_states = video_layers[-1]
            return AVFMAEModelOutput(
                video_last_hidden_state=video_states,
                pooler_output=video_states.mean(dim=1),
                video_hidden_states=video_layers if output_hidden_states else None,
            )

        if audio_values.shape[0] != batch_size:
            raise ValueError(
                f"pixel_values and audio_values must have the same batch size, got {batch_size} and "
                f"{audio_values.shape[0]}."
            )
        if masked:
            audio_bool_masked_pos = check_mask(
                "audio_bool_masked_pos", audio_bool_masked_pos, batch_size, self.config.audio_config.num_tokens
            )
        audio_embeddings = self.visible_embeddings(self.audio_embeddings, audio_values, audio_bool_masked_pos)
        audio_layers = self.audio_encoder(audio_embeddings, audio_bool_masked_pos, skip_unread=skip_unread, **kwargs)

        video_states, audio_states = video_layers[-1], audio_layers[-1]
        if masked:
            overall = torch.cat([video_states.mean(dim=1, keepdim=True), audio_states.mean(dim=1, keepdim=True)], -1)
        elif self.video_layer_weights is None:
            raise ValueError(
                "The unmasked path needs the layer weights; this AVFMAEModel was built with add_layer_weights=False."
            )
        else:
            overall = torch.cat(
                [
                    self.weighted_layer_sum(video_layers, self.video_layer_weights),
                    self.weighted_layer_sum(audio_layers, self.audio_layer_weights),
                ],
                dim=-1,
            )
        video_states, audio_states, overall = self.fusion(
            video_states, audio_states, overall, skip_unread=skip_unread, **kwargs
        )
        return AVFMAEModelOutput(
            video_last_hidden_state=video_states,
            audio_last_hidden_state=audio_states,
            pooler_output=torch.cat([video_states.mean(dim=1), audio_states.mean(dim=1)], dim=-1),
            overall_token=overall,
            video_hidden_states=video_layers if output_hidden_states else None,
            audio_hidden_states=audio_layers if output_hidden_states else None,
        )


class AVFMAEForPreTraining(AVFMAEPreTrainedModel):
    """AVF-MAE++ pretraining (§7): dual masking, masked encoding, fusion, one decoder per modality, and the loss of
    normalised-pixel + frame-difference video reconstruction, normalised audio-patch reconstruction and the
    hierarchical inter-modal contrastive term."""

    def __init__(self, config: AVFMAEConfig):
        if not config.use_audio:
            raise ValueError("AVF-MAE++ pretraining reconstructs both modalities; it needs config.use_audio=True.")
        super().__init__(config)
        self.avfmae = AVFMAEModel(config, add_layer_weights=False)
        self.video_decoder = AVFMAEDecoder(config, config.video_config)
        self.audio_decoder = AVFMAEDecoder(config, config.audio_config)
        self.masking = AVFMAEDualMaskingGenerator(config)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, -1, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 1, -1, 1, 1), persistent=False)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        if module is self:
            init.copy_(self.image_mean, torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, -1, 1, 1))
            init.copy_(self.image_std, torch.tensor(IMAGENET_DEFAULT_STD).view(1, 1, -1, 1, 1))
        else:
            super()._init_weights(module)

    def video_targets(self, pixel_values: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction targets of every video token, `(B, N, tubelet_size * patch_size**2 * num_channels)` (§7.3),
        or with `keep` `(B, N)` of the kept tokens only, `(B, num_kept, ...)` in increasing index (every target
        depends on its own tubelet only)."""
        video_config = self.config.video_config
        # 1. back to [0, 1] pixels
        pixels = pixel_values.float() * self.image_std + self.image_mean
        # 2. tubelets (B, N, tubelet * p * p, channels), each (token, channel) normalised on its own
        patches = patchify(pixels, video_config.tubelet_size, video_config.patch_size)
        if keep is not None:
            patches = select_tokens(patches, keep)
        if self.config.norm_pix_loss:
            patches = normalize_patches(patches)
        # 3. later frames of every tubelet become differences to its first frame
        if self.config.use_frame_difference_target:
            frames = patches.unflatten(2, (video_config.tubelet_size, -1))
            first = frames[:, :, :1]
            patches = torch.cat([first, frames[:, :, 1:] - first], dim=2).flatten(2, 3)
        # 4. channel fastest
        return patches.flatten(2)

    def audio_targets(self, audio_values: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction targets of every audio token, `(B, N, patch_size**2)`, from the normalised fbank (§7.3), or
        with `keep` `(B, N)` of the kept tokens only."""
        audio_config = self.config.audio_config
        # a spectrogram (B, 1, time, mel) is a one-frame, one-channel video
        patches = patchify(audio_values.float().unsqueeze(1), 1, audio_config.patch_size)
        if keep is not None:
            patches = select_tokens(patches, keep)
        if self.config.norm_pix_loss:
            patches = normalize_patches(patches)
        return patches.flatten(2)

    @staticmethod
    def reconstruction_loss(
        logits: torch.Tensor,
        targets: torch.Tensor,
        bool_masked_pos: torch.Tensor,
        decoder_bool_masked_pos: torch.Tensor,
    ) -> torch.Tensor:
        """Per-token MSE, averaged over the decoded positions the encoder did not see (one ratio for the batch)."""
        per_token = (logits.float() - targets).pow(2).mean(dim=-1)
        in_loss = bool_masked_pos[~decoder_bool_masked_pos].view(per_token.shape).to(per_token.dtype)
        return (per_token * in_loss).sum() / in_loss.sum().clamp(min=1)

    def contrastive_logits(
        self, video_features: tuple[torch.Tensor, ...], audio_features: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        """Cosine similarity of the token means of paired intermediate features, divided by the temperature."""
        logits = []
        for video_feature, audio_feature in zip(video_features, audio_features, strict=True):
            video_embedding = F.normalize(video_feature.mean(dim=1), dim=-1)
            audio_embedding = F.normalize(audio_feature.mean(dim=1), dim=-1)
            logits.append(video_embedding @ audio_embedding.T / self.config.contrastive_temperature)
        return tuple(logits)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        audio_values: torch.FloatTensor,
        video_bool_masked_pos: torch.BoolTensor | None = None,
        audio_bool_masked_pos: torch.BoolTensor | None = None,
        video_decoder_bool_masked_pos: torch.BoolTensor | None = None,
        audio_decoder_bool_masked_pos: torch.BoolTensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AVFMAEForPreTrainingOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Face frames, ImageNet-normalised.
        audio_values (`torch.FloatTensor` of shape `(batch_size, 1, max_length, num_mel_bins)`):
            Normalised Kaldi log-mel spectrogram.
        video_bool_masked_pos, audio_bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_tokens)`, *optional*):
            Encoder masks, True = hidden from the encoder. Drawn with the configured strategy when not given.
        video_decoder_bool_masked_pos, audio_decoder_bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_tokens)`, *optional*):
            Decoder masks, True = not reconstructed (independent of the encoder masks; only positions hidden from the
            encoder count in the loss). Drawn with the configured strategy when not given. To reconstruct exactly
            the hidden tokens, pass the negated encoder mask.
        generator (`torch.Generator`, *optional*):
            Random source for the masks that are drawn here (CPU generator).

        Example:

        ```python
        >>> import torch
        >>> from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining
        >>> model = AVFMAEForPreTraining(AVFMAEConfig())
        >>> outputs = model(torch.randn(2, 16, 3, 160, 160), torch.randn(2, 1, 256, 128),
        ...                 generator=torch.Generator().manual_seed(0))
        >>> outputs.video_logits.shape, outputs.audio_logits.shape
        (torch.Size([2, 400, 1536]), torch.Size([2, 64, 256]))
        ```
        """
        kwargs.pop("output_hidden_states", None)
        batch_size, device = pixel_values.shape[0], pixel_values.device
        drawn = self.masking(batch_size, generator=generator)

        def resolve(name: str, mask: torch.Tensor | None, num_tokens: int) -> torch.BoolTensor:
            mask = getattr(drawn, name) if mask is None else mask
            return check_mask(name, mask.to(device), batch_size, num_tokens)

        video_config, audio_config = self.config.video_config, self.config.audio_config
        video_bool_masked_pos = resolve("video_bool_masked_pos", video_bool_masked_pos, video_config.num_tokens)
        audio_bool_masked_pos = resolve("audio_bool_masked_pos", audio_bool_masked_pos, audio_config.num_tokens)
        video_decoder_bool_masked_pos = resolve(
            "video_decoder_bool_masked_pos", video_decoder_bool_masked_pos, video_config.num_tokens
        )
        audio_decoder_bool_masked_pos = resolve(
            "audio_decoder_bool_masked_pos", audio_decoder_bool_masked_pos, audio_config.num_tokens
        )

        outputs = self.avfmae(
            pixel_values,
            audio_values,
            video_bool_masked_pos=video_bool_masked_pos,
            audio_bool_masked_pos=audio_bool_masked_pos,
            output_hidden_states=True,
            **kwargs,
        )
        video_skips = tuple(outputs.video_hidden_states[i] for i in video_config.intermediate_layer_indices)
        audio_skips = tuple(outputs.audio_hidden_states[i] for i in audio_config.intermediate_layer_indices)

        # every attention's weights are computed when asked for (the encoder returns them), so nothing is skipped then
        output_attentions = kwargs.get("output_attentions")
        skip_unread = not (self.config.output_attentions if output_attentions is None else output_attentions)
        video_logits = self.video_decoder(
            outputs.video_last_hidden_state,
            video_skips,
            video_bool_masked_pos,
            video_decoder_bool_masked_pos,
            skip_unread=skip_unread,
            **kwargs,
        )
        audio_logits = self.audio_decoder(
            outputs.audio_last_hidden_state,
            audio_skips,
            audio_bool_masked_pos,
            audio_decoder_bool_masked_pos,
            skip_unread=skip_unread,
            **kwargs,
        )

        with torch.no_grad():
            video_targets = self.video_targets(pixel_values, keep=~video_decoder_bool_masked_pos)
            audio_targets = self.audio_targets(audio_values, keep=~audio_decoder_bool_masked_pos)
        video_loss = self.reconstruction_loss(
            video_logits, video_targets, video_bool_masked_pos, video_decoder_bool_masked_pos
        )
        audio_loss = self.reconstruction_loss(
            audio_logits, audio_targets, audio_bool_masked_pos, audio_decoder_bool_masked_pos
        )

        contrastive_logits = self.contrastive_logits(video_skips, audio_skips)
        labels = torch.arange(batch_size, device=device)
        contrastive_loss = sum(
            0.5 * (F.cross_entropy(logits.float(), labels) + F.cross_entropy(logits.T.float(), labels))
            for logits in contrastive_logits
        )
        loss = video_loss + audio_loss + self.config.contrastive_loss_weight * contrastive_loss

        return AVFMAEForPreTrainingOutput(
            loss=loss,
            video_loss=video_loss,
            audio_loss=audio_loss,
            contrastive_loss=contrastive_loss,
            video_logits=video_logits,
            audio_logits=audio_logits,
            video_targets=video_targets,
            audio_targets=audio_targets,
            contrastive_logits=contrastive_logits,
            video_bool_masked_pos=video_bool_masked_pos,
            video_decoder_bool_masked_pos=video_decoder_bool_masked_pos,
            audio_bool_masked_pos=audio_bool_masked_pos,
            audio_decoder_bool_masked_pos=audio_decoder_bool_masked_pos,
            video_hidden_states=outputs.video_hidden_states,
            audio_hidden_states=outputs.audio_hidden_states,
            attentions=outputs.attentions,
        )


class AVFMAEForVideoClassification(AVFMAEPreTrainedModel):
    """AVF-MAE++ with a classification or regression head on the pooled fused features (§8): `fc_norm` (LayerNorm)
    then a linear `classifier`. `config.problem_type` selects cross-entropy, multi-label BCE or MSE."""

    def __init__(self, config: AVFMAEConfig):
        super().__init__(config)
        self.avfmae = AVFMAEModel(config)
        feature_size = 2 * config.hidden_size if config.use_audio else config.hidden_size
        self.fc_norm = nn.LayerNorm(feature_size, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(feature_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        if module is self.classifier and isinstance(module, nn.Linear):
            # the official fine-tuning head keeps PyTorch's default initialisation
            init_like_pytorch_default(module)
        else:
            super()._init_weights(module)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        audio_values: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AVFMAEVideoClassifierOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Face frames, ImageNet-normalised.
        audio_values (`torch.FloatTensor` of shape `(batch_size, 1, max_length, num_mel_bins)`, *optional*):
            Normalised Kaldi log-mel spectrogram; required unless `config.use_audio` is False.
        labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
            Class indices (single-label), multi-hot targets (multi-label) or regression targets.

        Example:

        ```python
        >>> import torch
        >>> from avfmae_hf import AVFMAEConfig, AVFMAEForVideoClassification
        >>> model = AVFMAEForVideoClassification(AVFMAEConfig(num_labels=7)).eval()
        >>> model(torch.randn(1, 16, 3, 160, 160), torch.randn(1, 1, 256, 128)).logits.shape
        torch.Size([1, 7])
        ```
        """
        outputs = self.avfmae(pixel_values, audio_values, **kwargs)
        features = self.fc_norm(outputs.pooler_output)
        logits = self.classifier(features)
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return AVFMAEVideoClassifierOutput(
            loss=loss,
            logits=logits,
            pooler_output=features,
            video_hidden_states=outputs.video_hidden_states,
            audio_hidden_states=outputs.audio_hidden_states,
            attentions=outputs.attentions,
        )


__all__ = [
    "AVFMAEForPreTraining",
    "AVFMAEForPreTrainingOutput",
    "AVFMAEForVideoClassification",
    "AVFMAEModel",
    "AVFMAEModelOutput",
    "AVFMAEPreTrainedModel",
    "AVFMAEVideoClassifierOutput",
]
