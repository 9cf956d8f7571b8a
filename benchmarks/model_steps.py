"""One benchmark step of this package's models, or of the official implementation, for the model benchmarks.

A step is one call of `Step()`: an inference forward (`no_grad`), or a train step (forward, loss, backward, and an
optimizer step when one is given). Both implementations get the same inputs (seeded), and the official pretraining
step computes the engine's targets and loss around its forward, so that the two steps do the same work.

Precision: "float32"; or "bfloat16", which casts the weights for inference and runs training under bf16 autocast with
fp32 weights (mixed precision, as `Trainer(bf16=True)` and Accelerate do).
"""

import importlib
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from avfmae_hf import AVFMAEConfig, AVFMAEForPreTraining, AVFMAEForVideoClassification
from avfmae_hf.masking_avfmae import AVFMAEDualMaskingGenerator
from avfmae_hf.modeling_avfmae import normalize_patches, patchify


OFFICIAL_FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "official"
NUM_LABELS = 11  # MAFW, as in the official fine-tuning scripts
TASKS = ("classification", "pretraining")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def our_config(size: str | AVFMAEConfig, task: str, train: bool) -> AVFMAEConfig:
    """The configuration of a size (fine-tuning recipe: 11 labels, drop-path 0.1 in training) or a given config."""
    if isinstance(size, AVFMAEConfig):
        return size
    if task == "pretraining":
        return AVFMAEConfig.from_size(size)
    return AVFMAEConfig.from_size(size, num_labels=NUM_LABELS, drop_path_rate=0.1 if train else 0.0)


def make_batch(config: AVFMAEConfig, task: str, batch_size: int, device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the configured shapes, identical for the same seed; pretraining masks are drawn once."""
    generator = torch.Generator().manual_seed(seed)
    video, audio = config.video_config, config.audio_config
    batch = {
        "pixel_values": torch.randn(
            batch_size, video.num_frames, video.num_channels, video.image_size, video.image_size, generator=generator
        ),
        "audio_values": torch.randn(batch_size, 1, audio.max_length, audio.num_mel_bins, generator=generator),
    }
    if task == "pretraining":
        masks = AVFMAEDualMaskingGenerator(config)(batch_size, generator=generator)
        batch.update(vars(masks))
    else:
        batch["labels"] = torch.randint(0, max(config.num_labels, 1), (batch_size,), generator=generator)
    return {name: value.to(device) for name, value in batch.items()}


class Step:
    """A benchmark step: `step()` runs it once; `model`, `batch_size` and `task` say what it runs."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_or_output: Callable[[], torch.Tensor],
        batch_size: int,
        task: str,
        train: bool,
        precision: str,
        device: torch.device,
        optimizer: torch.optim.Optimizer | None = None,
    ):
        self.model, self.loss_or_output, self.batch_size, self.task = model, loss_or_output, batch_size, task
        self.train, self.device, self.optimizer = train, device, optimizer
        bf16_autocast = train and precision == "bfloat16"
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast)

    def __call__(self, optimizer_step: bool = True) -> torch.Tensor:
        """Runs the step; `optimizer_step=False` leaves out the optimizer (for counting FLOPs, finding kernels)."""
        if not self.train:
            with torch.no_grad():
                return self.loss_or_output()
        with self.autocast:
            loss = self.loss_or_output()
        loss.backward()
        if self.optimizer is not None and optimizer_step:
            self.optimizer.step()
        self.model.zero_grad(set_to_none=True)
        return loss.detach()


def prepare(model: torch.nn.Module, train: bool, precision: str, device: torch.device) -> torch.nn.Module:
    model = model.to(device).train(train)
    if not train and precision == "bfloat16":
        # inference keeps the weights themselves in bf16; training uses autocast over fp32 weights
        model.to(torch.bfloat16)
    return model


def make_optimizer(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    # the fused kernel is what users get on CUDA; the foreach default elsewhere
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=device.type == "cuda")


def our_step(
    size: str | AVFMAEConfig,
    task: str,
    batch_size: int,
    train: bool = True,
    precision: str = "float32",
    device="cpu",
    optimizer: bool = False,
    attn_implementation: str = "sdpa",
    seed: int = 0,
) -> Step:
    """A step of this package's `AVFMAEForVideoClassification` (`task="classification"`) or `AVFMAEForPreTraining`."""
    device = torch.device(device)
    config = our_config(size, task, train)
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    model_class = AVFMAEForPreTraining if task == "pretraining" else AVFMAEForVideoClassification
    model = prepare(model_class(config), train, precision, device)
    batch = make_batch(config, task, batch_size, device, seed)

    if task == "pretraining":

        def run():
            return model(**batch).loss

    else:
        labels = batch.pop("labels")

        def run():
            outputs = model(**batch, labels=labels if train else None)
            return outputs.loss if train else outputs.logits

    return Step(
        model, run, batch_size, task, train, precision, device, make_optimizer(model, device) if optimizer else None
    )


def compile_layers(model: torch.nn.Module, backend: str) -> None:
    """Regional compilation: every repeated layer (the model's `_no_split_modules` classes) is compiled on its own,
    so each layer class is compiled once and reused by all its instances."""
    # layers differ in drop-path rate and shapes (video, audio, the last layer's partial output); each variant is
    # compiled once, and a low recompile limit would silently leave the later ones eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    layer_classes = set(model._no_split_modules)
    for module in model.modules():
        if type(module).__name__ in layer_classes:
            module.compile(backend=backend, dynamic=False)


# --- the official implementation -------------------------------------------------------------------------------


def install_timm_stand_ins() -> None:
    """Minimal replacements for the four timm helpers the official model files import (timm is not a dependency).

    `drop_path` is stochastic depth per sample, `to_2tuple` repeats a scalar, `trunc_normal_` is torch's truncated
    normal initialiser and `register_model` leaves the function as it is.
    """
    if "timm.models.layers" in sys.modules:
        return

    def drop_path(hidden_states, drop_prob: float = 0.0, training: bool = False):
        if drop_prob == 0.0 or not training:
            return hidden_states
        keep_prob = 1.0 - drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        return hidden_states * hidden_states.new_empty(shape).bernoulli_(keep_prob) / keep_prob

    def to_2tuple(value):
        return tuple(value) if isinstance(value, list | tuple) else (value, value)

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)

    layers = types.ModuleType("timm.models.layers")
    layers.drop_path, layers.to_2tuple, layers.trunc_normal_ = drop_path, to_2tuple, trunc_normal_
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda function: function
    models = types.ModuleType("timm.models")
    models.layers, models.registry = layers, registry
    timm = types.ModuleType("timm")
    timm.models = models
    sys.modules.update(
        {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry}
    )


def official_model(official_dir: str | Path, size: str, task: str, train: bool) -> torch.nn.Module:
    """The official model of `size`, built by its registered entry point with the release scripts' arguments
    (read from `tests/fixtures/official/keys_{pretrain,finetune}_{size}.json`)."""
    official_dir = Path(official_dir).resolve()
    missing = [
        name for name in ("modeling_finetune_av.py", "modeling_pretrain_av.py") if not (official_dir / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"--official-dir {official_dir} lacks {', '.join(missing)} (an AVF-MAE++ checkout).")
    description = json.loads(
        (OFFICIAL_FIXTURES / f"keys_{'pretrain' if task == 'pretraining' else 'finetune'}_{size}.json").read_text()
    )
    install_timm_stand_ins()
    if str(official_dir) not in sys.path:
        sys.path.insert(0, str(official_dir))
    module_name, entry_point = description["constructor"].rsplit(".", 1)
    kwargs = dict(description["constructor_kwargs"])
    if task == "classification" and not train:
        kwargs["drop_path_rate"] = 0.0
    return getattr(importlib.import_module(module_name), entry_point)(**kwargs)


def official_targets(config: AVFMAEConfig, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretraining engine's targets at the decoded positions (normalised pixels with frame differences; normalised
    fbank patches), computed without gradients as the engine does."""
    video, audio = config.video_config, config.audio_config
    mean = torch.tensor([0.485, 0.456, 0.406], device=batch["pixel_values"].device).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=batch["pixel_values"].device).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        patches = normalize_patches(patchify(batch["pixel_values"] * std + mean, video.tubelet_size, video.patch_size))
        frames = patches.unflatten(2, (video.tubelet_size, -1))
        patches = torch.cat([frames[:, :, :1], frames[:, :, 1:] - frames[:, :, :1]], dim=2).flatten(2)
        audio_patches = normalize_patches(patchify(batch["audio_values"].unsqueeze(1), 1, audio.patch_size)).flatten(2)
        keep_video, keep_audio = ~batch["video_decoder_bool_masked_pos"], ~batch["audio_decoder_bool_masked_pos"]
        batch_size = patches.shape[0]
        return (
            patches[keep_video].view(batch_size, -1, patches.shape[-1]),
            audio_patches[keep_audio].view(batch_size, -1, audio_patches.shape[-1]),
        )


def official_reconstruction_loss(logits, targets, bool_masked_pos, decoder_bool_masked_pos) -> torch.Tensor:
    per_token = (logits - targets).pow(2).mean(dim=-1)
    in_loss = bool_masked_pos[~decoder_bool_masked_pos].view(per_token.shape)
    return (per_token * in_loss).sum() / in_loss.sum()


def official_step(
    official_dir: str | Path,
    size: str,
    task: str,
    batch_size: int,
    train: bool = True,
    precision: str = "float32",
    device="cpu",
    optimizer: bool = False,
    seed: int = 0,
) -> Step:
    """The same step as [`our_step`] with the official model: same inputs (video as `(B, C, T, H, W)`), same loss."""
    device = torch.device(device)
    config = our_config(size, task, train)
    torch.manual_seed(seed)
    model = prepare(official_model(official_dir, size, task, train), train, precision, device)
    batch = make_batch(config, task, batch_size, device, seed)
    video = batch["pixel_values"].permute(0, 2, 1, 3, 4).contiguous()
    audio = batch["audio_values"]
    if not train and precision == "bfloat16":
        video, audio = video.to(torch.bfloat16), audio.to(torch.bfloat16)

    if task == "pretraining":
        masks = [
            batch[name]
            for name in (
                "video_bool_masked_pos",
                "video_decoder_bool_masked_pos",
                "audio_bool_masked_pos",
                "audio_decoder_bool_masked_pos",
            )
        ]
        contrastive_labels = torch.arange(batch_size, device=device)

        def run():
            video_targets, audio_targets = official_targets(config, batch)
            video_logits, audio_logits, video_to_audio, audio_to_video = model(
                video, masks[0], masks[1], audio, *masks[2:]
            )
            loss = official_reconstruction_loss(video_logits, video_targets, masks[0], masks[1])
            loss = loss + official_reconstruction_loss(audio_logits, audio_targets, masks[2], masks[3])
            contrastive = sum(
                0.5 * (F.cross_entropy(v2a, contrastive_labels) + F.cross_entropy(a2v, contrastive_labels))
                for v2a, a2v in zip(video_to_audio, audio_to_video, strict=True)
            )
            return loss + config.contrastive_loss_weight * contrastive

    else:
        labels = batch["labels"]

        def run():
            logits = model(video, audio)
            return F.cross_entropy(logits, labels) if train else logits

    return Step(
        model, run, batch_size, task, train, precision, device, make_optimizer(model, device) if optimizer else None
    )


def count_flops(step: Step) -> int:
    """FLOPs of one call of `step` (matmul, convolution and attention, `torch.utils.flop_counter`).

    The optimizer step is left out (it has no matrix products). Attention runs on the math backend while counting, so that its matrix products are counted on every device (the
    counter has no formula for the CPU's fused kernel); the count does not depend on the kernel that runs later.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        step(optimizer_step=False)  # the optimizer does no matrix products
    synchronize(step.device)
    return counter.get_total_flops()
