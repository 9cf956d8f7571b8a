# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""The official AVF-MAE++ training augmentations (architecture.md §11.2), op by op.

Fine-tuning, per clip (`FINE_TUNE_TRAIN_ORDER`): resize every frame to 160x160 (PIL bilinear) -> RandAugment
`rand-m7-n4-mstd0.5-inc1` on the uint8 frames, the same op parameters on every frame -> scale to [0, 1] and ImageNet
normalise -> random resized crop (scale 0.08-1, ratio 3/4-4/3, bilinear) -> horizontal flip (p=0.5) -> random
erasing (p=0.25, pixel mode, one box for every frame). Per batch: mixup 0.8 / cutmix 1.0 with label smoothing 0.1
into soft targets, on the video only (the audio is not mixed), and a soft-target cross-entropy.

Pretraining, per clip: the official random temporal start and the multi-scale crop (one of the (width, height) crop
sizes and one of 13 fixed offsets, the same for every frame, PIL bilinear resize to 160x160), no flip.

Every random draw comes from a `generator` argument (a `numpy.random.Generator`, a `numpy.random.RandomState`, an
`int` seed or `None` for fresh entropy), and every op can also be called with explicit parameters
(`apply_randaugment_op`, `resized_crop`, `erase_box`, `mix_batch`, `multiscale_crop`), which is how the official
fixtures check them.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .random_avfmae import as_numpy_random
from .video_processing_avfmae import FrameSampling, _random_integer


# The official fine-tuning transforms, in the order they run (config.json of the reference fixtures).
FINE_TUNE_TRAIN_ORDER = (
    "sample_frames",
    "resize",
    "randaugment",
    "normalize",
    "random_resized_crop",
    "horizontal_flip",
    "random_erasing",
    "mixup_cutmix",
)
# The switchable fine-tuning augmentations (each has a `--no_<name>`-style switch in the fine-tuning script).
FINE_TUNE_AUGMENTATIONS = ("randaugment", "random_resized_crop", "horizontal_flip", "random_erasing", "mixup_cutmix")
PRETRAINING_AUGMENTATIONS = ("multiscale_crop", "random_temporal_start", "audio_gain_jitter")

# The "increasing" RandAugment set (`inc1`), in the official order: the op is chosen by index into this tuple.
RANDAUGMENT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
# Ops whose level gets a random sign.
SIGNED_RANDAUGMENT_OPS = frozenset(
    (
        "Rotate",
        "ColorIncreasing",
        "ContrastIncreasing",
        "BrightnessIncreasing",
        "SharpnessIncreasing",
        "ShearX",
        "ShearY",
        "TranslateXRel",
        "TranslateYRel",
    )
)
RANDAUGMENT_MAX_LEVEL = 10.0
DEFAULT_RANDAUGMENT = "rand-m7-n4-mstd0.5-inc1"
RANDAUGMENT_FILL = (128, 128, 128)
PIL_BICUBIC = 3
MULTISCALE_CROP_SCALES = (1.0, 0.875, 0.75, 0.66)


def _pil():
    from PIL import Image, ImageEnhance, ImageOps

    return Image, ImageEnhance, ImageOps


def _to_image(frame):
    Image = _pil()[0]
    if isinstance(frame, Image.Image):
        return frame
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"Frames must be (height, width, 3) uint8 RGB arrays, got {frame.dtype} {frame.shape}.")
    return Image.fromarray(frame)


# --------------------------------------------------------------------------------------------------------------------
# RandAugment
# --------------------------------------------------------------------------------------------------------------------


def randaugment_level_args(op_name: str, magnitude: float, negate: bool = False) -> tuple:
    """The arguments of op `op_name` at `magnitude` (0-10), negated when `negate` and the op is signed.

    Levels (magnitude m, fraction f = m / 10): Rotate 30 f degrees; PosterizeIncreasing keeps 4 - int(4 f) bits;
    SolarizeIncreasing threshold 256 - int(256 f); SolarizeAdd adds int(110 f); the four enhancements use the factor
    1 +- 0.9 f; ShearX/Y 0.3 f; TranslateX/YRel 0.45 f of the frame size; the other ops take no argument.
    """
    if op_name not in RANDAUGMENT_OPS:
        raise ValueError(f"Unknown RandAugment op {op_name!r}; the `inc1` set is {', '.join(RANDAUGMENT_OPS)}.")
    fraction = magnitude / RANDAUGMENT_MAX_LEVEL
    sign = -1.0 if negate and op_name in SIGNED_RANDAUGMENT_OPS else 1.0
    if op_name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if op_name == "Rotate":
        return (sign * fraction * 30.0,)
    if op_name == "PosterizeIncreasing":
        return (4 - int(fraction * 4),)
    if op_name == "SolarizeIncreasing":
        return (256 - int(fraction * 256),)
    if op_name == "SolarizeAdd":
        return (int(fraction * 110),)
    if op_name.endswith("Increasing"):  # Color, Contrast, Brightness, Sharpness
        return (1.0 + sign * fraction * 0.9,)
    if op_name in ("ShearX", "ShearY"):
        return (sign * fraction * 0.3,)
    return (sign * fraction * 0.45,)  # TranslateXRel, TranslateYRel


def _apply_to_image(image, op_name: str, level_args: tuple, fillcolor: tuple, resample: int):
    Image, ImageEnhance, ImageOps = _pil()
    geometric = {"resample": resample, "fillcolor": tuple(fillcolor)}
    if op_name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if op_name == "Equalize":
        return ImageOps.equalize(image)
    if op_name == "Invert":
        return ImageOps.invert(image)
    (level,) = level_args
    if op_name == "Rotate":
        return image.rotate(level, **geometric)
    if op_name == "PosterizeIncreasing":
        return image if level >= 8 else ImageOps.posterize(image, int(level))
    if op_name == "SolarizeIncreasing":
        return ImageOps.solarize(image, level)
    if op_name == "SolarizeAdd":
        # pixels below 128 get `level` added (capped at 255), the others are kept
        table = [min(255, value + int(level)) if value < 128 else value for value in range(256)]
        return image.point(table * len(image.getbands()))
    if op_name.endswith("Increasing"):
        enhancer = {
            "ColorIncreasing": ImageEnhance.Color,
            "ContrastIncreasing": ImageEnhance.Contrast,
            "BrightnessIncreasing": ImageEnhance.Brightness,
            "SharpnessIncreasing": ImageEnhance.Sharpness,
        }[op_name]
        return enhancer(image).enhance(level)
    width, height = image.size
    matrix = {
        "ShearX": (1, level, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, level, 1, 0),
        "TranslateXRel": (1, 0, level * width, 0, 1, 0),
        "TranslateYRel": (1, 0, 0, 0, 1, level * height),
    }[op_name]
    return image.transform(image.size, Image.Transform.AFFINE, matrix, **geometric)


def apply_randaugment_op(
    frames: Sequence,
    op_name: str,
    level_args: Sequence[float] = (),
    fillcolor: Sequence[int] = RANDAUGMENT_FILL,
    resample: int = PIL_BICUBIC,
) -> list[np.ndarray]:
    """Apply one RandAugment op with explicit arguments (see [`randaugment_level_args`]) to every frame.

    Args:
        frames: `(height, width, 3)` uint8 RGB frames (arrays or PIL images), or a `(T, H, W, 3)` array.
        op_name (`str`): one of `RANDAUGMENT_OPS`.
        level_args: the op's arguments (empty for AutoContrast, Equalize and Invert).
        fillcolor, resample: the fill of uncovered pixels and the PIL filter of the geometric ops (official:
            (128, 128, 128) and 3 = bicubic).

    Returns:
        The frames as `(height, width, 3)` uint8 arrays.
    """
    if op_name not in RANDAUGMENT_OPS:
        raise ValueError(f"Unknown RandAugment op {op_name!r}; the `inc1` set is {', '.join(RANDAUGMENT_OPS)}.")
    expected = 0 if op_name in ("AutoContrast", "Equalize", "Invert") else 1
    if len(level_args) != expected:
        raise ValueError(f"RandAugment op {op_name} takes {expected} level argument(s), got {list(level_args)}.")
    return [
        np.asarray(_apply_to_image(_to_image(frame), op_name, tuple(level_args), tuple(fillcolor), resample))
        for frame in frames
    ]


@dataclass(frozen=True)
class RandAugmentStep:
    """One drawn step of a RandAugment policy: the op, whether it runs (probability draw), its magnitude and
    arguments. The same step is applied to every frame of a clip."""

    op_name: str
    applied: bool
    magnitude: float | None = None
    level_args: tuple = ()


@dataclass(frozen=True)
class RandAugmentPolicy:
    """A RandAugment policy of the `inc1` (increasing) op set, as a timm-style config string parses into.

    Per clip: `num_layers` ops are chosen uniformly with replacement; each runs with probability `probability`, at
    a magnitude drawn once from N(`magnitude`, `magnitude_std`) clipped to [0, `magnitude_max`], with a sign drawn
    once (signed ops); every frame of the clip gets the same ops and parameters.
    """

    num_layers: int = 4
    magnitude: float = 7.0
    magnitude_std: float = 0.5
    magnitude_max: float = RANDAUGMENT_MAX_LEVEL
    probability: float = 0.5
    fillcolor: tuple = RANDAUGMENT_FILL
    resample: int = PIL_BICUBIC

    @classmethod
    def from_string(cls, config_string: str = DEFAULT_RANDAUGMENT) -> "RandAugmentPolicy":
        """Parse `rand-m<magnitude>-n<layers>-mstd<std>-inc1[-mmax<max>][-p<probability>]` (timm's syntax)."""
        sections = config_string.split("-")
        if sections[0] != "rand":
            raise ValueError(f"A RandAugment config string starts with 'rand-', got {config_string!r}.")
        values = {}
        for section in sections[1:]:
            match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)([0-9.]+)", section)
            if match is None:
                raise ValueError(
                    f"Unknown RandAugment setting {section!r} in {config_string!r}; known: m, n, mstd, mmax, p, inc."
                )
            values[match.group(1)] = float(match.group(2))
        if values.pop("inc", 0.0) != 1.0:
            raise ValueError(
                f"Only the increasing op set (inc1) of the official recipe is implemented: {config_string!r}."
            )
        settings = {"m": "magnitude", "n": "num_layers", "mstd": "magnitude_std", "mmax": "magnitude_max"}
        kwargs = {settings[key]: value for key, value in values.items() if key in settings}
        if "num_layers" in kwargs:
            kwargs["num_layers"] = int(kwargs["num_layers"])
        if "p" in values:
            kwargs["probability"] = values["p"]
        return cls(**kwargs)

    def draw(self, generator=None) -> list[RandAugmentStep]:
        """Draw the steps of one clip, in the official order: the `num_layers` op choices, then for each op its
        probability draw and, when it runs, its magnitude and (signed ops) its sign."""
        generator = as_numpy_random(generator)
        choices = generator.choice(len(RANDAUGMENT_OPS), self.num_layers, replace=True)
        steps = []
        for choice in choices:
            op_name = RANDAUGMENT_OPS[int(choice)]
            if self.probability < 1.0 and generator.random() > self.probability:
                steps.append(RandAugmentStep(op_name, applied=False))
                continue
            magnitude = self.magnitude
            if self.magnitude_std > 0:
                magnitude = float(generator.normal(self.magnitude, self.magnitude_std))
            magnitude = min(self.magnitude_max, max(0.0, magnitude))
            negate = op_name in SIGNED_RANDAUGMENT_OPS and generator.random() > 0.5
            steps.append(RandAugmentStep(op_name, True, magnitude, randaugment_level_args(op_name, magnitude, negate)))
        return steps

    def apply(self, frames: Sequence, steps: Sequence[RandAugmentStep]) -> list[np.ndarray]:
        """Apply drawn steps to every frame."""
        frames = [np.asarray(frame) for frame in frames]
        for step in steps:
            if step.applied:
                frames = apply_randaugment_op(frames, step.op_name, step.level_args, self.fillcolor, self.resample)
        return frames

    def __call__(self, frames: Sequence, generator=None) -> list[np.ndarray]:
        return self.apply(frames, self.draw(generator))


# --------------------------------------------------------------------------------------------------------------------
# Random resized crop, flip, random erasing (on the normalised (T, C, H, W) clip)
# --------------------------------------------------------------------------------------------------------------------


def draw_resized_crop_box(
    height: int,
    width: int,
    generator=None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> tuple[int, int, int, int]:
    """A random-resized-crop box `(top, left, height, width)`: `tries` draws of an area fraction in `scale` and a
    log-uniform aspect ratio in `ratio`; when none fits, the centre crop with the aspect clamped to `ratio`."""
    generator = as_numpy_random(generator)
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        target_area = area * generator.uniform(scale[0], scale[1])
        aspect = math.exp(generator.uniform(log_ratio[0], log_ratio[1]))
        crop_width = int(round(math.sqrt(target_area * aspect)))
        crop_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = _random_integer(generator, 0, height - crop_height + 1)
            left = _random_integer(generator, 0, width - crop_width + 1)
            return top, left, crop_height, crop_width
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_width, crop_height = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_height, crop_width = height, int(round(height * max(ratio)))
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def resized_crop(clip: torch.Tensor, box: Sequence[int], size: tuple[int, int]) -> torch.Tensor:
    """Crop `box = (top, left, height, width)` from every frame of a `(T, C, H, W)` float clip and resize it to
    `size = (height, width)` (bilinear, `align_corners=False`)."""
    top, left, height, width = (int(value) for value in box)
    if clip.ndim != 4:
        raise ValueError(f"Expected a (frames, channels, height, width) clip, got shape {tuple(clip.shape)}.")
    if (
        top < 0
        or left < 0
        or height < 1
        or width < 1
        or top + height > clip.shape[-2]
        or left + width > clip.shape[-1]
    ):
        raise ValueError(f"The crop box {tuple(box)} does not fit a {tuple(clip.shape[-2:])} frame.")
    cropped = clip[:, :, top : top + height, left : left + width]
    return F.interpolate(cropped, size=tuple(size), mode="bilinear", align_corners=False)


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame (the width axis, the last one)."""
    return clip.flip(-1)


def draw_erasing_box(
    height: int,
    width: int,
    generator=None,
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
    tries: int = 100,
) -> tuple[int, int, int, int] | None:
    """A random-erasing box `(top, left, height, width)`: an area fraction in [`min_area`, `max_area`] and a
    log-uniform aspect in [`min_aspect`, 1 / `min_aspect`], strictly smaller than the frame; `None` when `tries`
    draws all fail."""
    generator = as_numpy_random(generator)
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    for _ in range(tries):
        target_area = generator.uniform(min_area, max_area) * height * width
        aspect = math.exp(generator.uniform(log_aspect[0], log_aspect[1]))
        box_height = int(round(math.sqrt(target_area * aspect)))
        box_width = int(round(math.sqrt(target_area / aspect)))
        if box_width < width and box_height < height:
            top = _random_integer(generator, 0, height - box_height + 1)
            left = _random_integer(generator, 0, width - box_width + 1)
            return top, left, box_height, box_width
    return None


def erase_box(clip: torch.Tensor, box: Sequence[int], generator=None) -> torch.Tensor:
    """Fill `box` of every frame of a `(T, C, H, W)` clip with fresh N(0, 1) noise (per pixel, channel and frame),
    in place; returns the clip."""
    generator = as_numpy_random(generator)
    top, left, height, width = (int(value) for value in box)
    noise = generator.normal(size=(clip.shape[0], clip.shape[1], height, width))
    clip[:, :, top : top + height, left : left + width] = torch.from_numpy(noise).to(clip.dtype)
    return clip


def random_erasing(clip: torch.Tensor, generator=None, probability: float = 0.25) -> torch.Tensor:
    """Official random erasing of a clip (pixel mode, one box, the same box in every frame), in place."""
    generator = as_numpy_random(generator)
    if generator.random() > probability:
        return clip
    box = draw_erasing_box(clip.shape[-2], clip.shape[-1], generator)
    return clip if box is None else erase_box(clip, box, generator)


# --------------------------------------------------------------------------------------------------------------------
# Mixup / CutMix (per batch, video only) and the soft-target loss
# --------------------------------------------------------------------------------------------------------------------


def smoothed_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.1) -> torch.Tensor:
    """One-hot targets with label smoothing: `smoothing / num_classes` off, `1 - smoothing` more on the label."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def mixed_targets(labels: torch.Tensor, num_classes: int, lam: float, smoothing: float = 0.1) -> torch.Tensor:
    """Soft targets of a mixed batch: `lam` of each sample's smoothed one-hot plus `1 - lam` of its partner's (the
    batch reversed)."""
    targets = smoothed_one_hot(labels, num_classes, smoothing)
    return targets * lam + targets.flip(0) * (1.0 - lam)


def draw_cutmix_box(height: int, width: int, lam: float, generator=None) -> tuple[int, int, int, int]:
    """A CutMix box `(y0, y1, x0, x1)` of sides `int(side * sqrt(1 - lam))` around a uniform random centre, clipped
    to the frame."""
    generator = as_numpy_random(generator)
    cut_ratio = math.sqrt(1.0 - lam)
    cut_height, cut_width = int(height * cut_ratio), int(width * cut_ratio)
    center_y = _random_integer(generator, 0, height)
    center_x = _random_integer(generator, 0, width)
    y0, y1 = (int(np.clip(center_y + offset, 0, height)) for offset in (-(cut_height // 2), cut_height // 2))
    x0, x1 = (int(np.clip(center_x + offset, 0, width)) for offset in (-(cut_width // 2), cut_width // 2))
    return y0, y1, x0, x1


def cutmix_lambda(box: Sequence[int], height: int, width: int) -> float:
    """The mixing weight a clipped CutMix box leaves to the sample itself: `1 - box area / frame area`."""
    y0, y1, x0, x1 = box
    return 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)


@dataclass(frozen=True)
class MixParameters:
    """One batch's mixing: mixup or cutmix, the weight `lam` of each sample (after the box correction for cutmix)
    and the cutmix box `(y0, y1, x0, x1)`."""

    use_cutmix: bool
    lam: float
    box: tuple[int, int, int, int] | None = None


def mix_batch(pixel_values: torch.Tensor, parameters: MixParameters) -> torch.Tensor:
    """Mix a batch with its reverse (sample `i` with sample `B - 1 - i`), in place: a weighted sum (mixup) or the
    partner's box pasted into every frame (cutmix; the last two axes are height and width, any layout before)."""
    if pixel_values.shape[0] % 2:
        raise ValueError(f"Mixup/CutMix needs an even batch size, got {pixel_values.shape[0]}.")
    if parameters.use_cutmix:
        y0, y1, x0, x1 = parameters.box
        pixel_values[..., y0:y1, x0:x1] = pixel_values.flip(0)[..., y0:y1, x0:x1]
    elif parameters.lam != 1.0:
        partner = pixel_values.flip(0).mul_(1.0 - parameters.lam)
        pixel_values.mul_(parameters.lam).add_(partner)
    return pixel_values


@dataclass(frozen=True)
class MixupCutmix:
    """The official batch mixing: with probability `probability`, CutMix (Beta(`cutmix_alpha`)) with probability
    `switch_probability`, else Mixup (Beta(`mixup_alpha`)); one `lam` per batch, the partner of each sample is the
    batch reversed, the CutMix box is the same in every frame and `lam` is corrected to the clipped box; targets are
    label-smoothed one-hots mixed with the same `lam`. Only the video is mixed.
    """

    num_classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    probability: float = 1.0
    switch_probability: float = 0.5
    label_smoothing: float = 0.1

    def draw(self, height: int, width: int, generator=None) -> MixParameters:
        generator = as_numpy_random(generator)
        if generator.random() >= self.probability:
            return MixParameters(False, 1.0)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(generator.random() < self.switch_probability)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(generator.beta(alpha, alpha))
        if not use_cutmix:
            return MixParameters(False, lam)
        box = draw_cutmix_box(height, width, lam, generator)
        return MixParameters(True, cutmix_lambda(box, height, width), box)

    def apply(
        self, pixel_values: torch.Tensor, labels: torch.Tensor, parameters: MixParameters
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix `pixel_values` in place and return it with the soft targets `(B, num_classes)`."""
        if labels.ndim != 1:
            raise ValueError(
                f"Mixup/CutMix takes class indices `(batch,)`, got labels of shape {tuple(labels.shape)}."
            )
        mixed = mix_batch(pixel_values, parameters)
        return mixed, mixed_targets(labels, self.num_classes, parameters.lam, self.label_smoothing)

    def __call__(
        self, pixel_values: torch.Tensor, labels: torch.Tensor, generator=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if pixel_values.shape[0] % 2:
            raise ValueError(f"Mixup/CutMix needs an even batch size, got {pixel_values.shape[0]}.")
        parameters = self.draw(pixel_values.shape[-2], pixel_values.shape[-1], generator)
        return self.apply(pixel_values, labels, parameters)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with soft targets `(B, num_classes)`: `mean(sum(-targets * log_softmax(logits)))`."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


# --------------------------------------------------------------------------------------------------------------------
# Pretraining: multi-scale crop and the random temporal start
# --------------------------------------------------------------------------------------------------------------------


def multiscale_crop_sizes(
    width: int,
    height: int,
    output_size: int = 160,
    scales: Sequence[float] = MULTISCALE_CROP_SCALES,
    max_distort: int = 1,
) -> list[tuple[int, int]]:
    """The candidate crop sizes `(width, height)` of a `width` x `height` frame: sides `int(scale * short side)`
    (a side within 3 px of `output_size` becomes `output_size`), every pair whose scale indices differ by at most
    `max_distort`, height index first."""
    sides = [int(min(width, height) * scale) for scale in scales]
    sides = [output_size if abs(side - output_size) < 3 else side for side in sides]
    return [
        (crop_width, crop_height)
        for i, crop_height in enumerate(sides)
        for j, crop_width in enumerate(sides)
        if abs(i - j) <= max_distort
    ]


def multiscale_crop_offsets(width: int, height: int, crop_width: int, crop_height: int) -> list[tuple[int, int]]:
    """The 13 fixed crop offsets `(x, y)`: steps of a quarter of the free space; the 4 corners, the centre, the 4
    edge middles and the 4 quarter points (official order)."""
    x, y = (width - crop_width) // 4, (height - crop_height) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    return [(i * x, j * y) for i, j in grid]


def draw_multiscale_crop(
    width: int, height: int, generator=None, output_size: int = 160, scales: Sequence[float] = MULTISCALE_CROP_SCALES
) -> tuple[int, int, int, int]:
    """A multi-scale crop `(crop_width, crop_height, offset_x, offset_y)`: a candidate size, then one of its 13
    offsets, each uniformly."""
    generator = as_numpy_random(generator)
    sizes = multiscale_crop_sizes(width, height, output_size, scales)
    crop_width, crop_height = sizes[_random_integer(generator, 0, len(sizes))]
    offsets = multiscale_crop_offsets(width, height, crop_width, crop_height)
    offset_x, offset_y = offsets[_random_integer(generator, 0, len(offsets))]
    return crop_width, crop_height, offset_x, offset_y


def multiscale_crop(frames: Sequence, crop: Sequence[int], output_size: int = 160) -> list[np.ndarray]:
    """Crop `crop = (crop_width, crop_height, offset_x, offset_y)` from every frame (PIL) and resize it to
    `output_size` x `output_size` with PIL's bilinear filter."""
    Image = _pil()[0]
    crop_width, crop_height, offset_x, offset_y = (int(value) for value in crop)
    outputs = []
    for frame in frames:
        image = _to_image(frame)
        if offset_x + crop_width > image.size[0] or offset_y + crop_height > image.size[1]:
            raise ValueError(f"The crop {tuple(crop)} does not fit a {image.size[0]}x{image.size[1]} frame.")
        cropped = image.crop((offset_x, offset_y, offset_x + crop_width, offset_y + crop_height))
        outputs.append(np.asarray(cropped.resize((output_size, output_size), Image.Resampling.BILINEAR)))
    return outputs


def pretraining_frame_indices(total_frames: int, num_frames: int = 16, frame_stride: int = 4, generator=None):
    """The official pretraining temporal sampling: a start drawn uniformly in `[0, total_frames - window]` (window =
    `num_frames * frame_stride`), then every `frame_stride`-th frame; a clip shorter than the window starts at 0 and
    repeats its last frame. Returns `(indices (num_frames,) int64, start)`."""
    if total_frames < 1:
        raise ValueError(f"A clip needs at least one frame, got {total_frames}.")
    window = num_frames * frame_stride
    start = _random_integer(generator, 0, total_frames - window + 1) if total_frames > window else 0
    indices = np.minimum(start + frame_stride * np.arange(num_frames), total_frames - 1).astype(np.int64)
    return indices, start


# --------------------------------------------------------------------------------------------------------------------
# Recipes: the per-clip transforms of fine-tuning and pretraining
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class FineTuningAugmentation:
    """The official fine-tuning train transforms of one clip (everything but the batch mixing, see
    [`MixupCutmix`]), each switchable off.

    Args:
        randaugment (`str` or `None`, defaults to `"rand-m7-n4-mstd0.5-inc1"`): the RandAugment policy; `None` is off.
        random_resized_crop (`bool`, defaults to `True`), crop_scale, crop_ratio: the crop of the normalised clip.
        flip_probability (`float`, defaults to 0.5): horizontal flip; 0 is off.
        erasing_probability (`float`, defaults to 0.25): random erasing; 0 is off.
    """

    randaugment: str | None = DEFAULT_RANDAUGMENT
    random_resized_crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    erasing_probability: float = 0.25
    policy: RandAugmentPolicy | None = field(init=False, default=None)

    def __post_init__(self):
        self.policy = RandAugmentPolicy.from_string(self.randaugment) if self.randaugment else None

    def transform_frames(self, frames: Sequence, size: tuple[int, int], generator=None) -> list[np.ndarray]:
        """Resize uint8 frames to `size = (height, width)` (PIL bilinear) and apply RandAugment (the same steps to
        every frame)."""
        Image = _pil()[0]
        target = (size[1], size[0])
        frames = [
            np.asarray(frame)
            if np.asarray(frame).shape[1::-1] == target
            else np.asarray(_to_image(frame).resize(target, Image.Resampling.BILINEAR))
            for frame in frames
        ]
        return frames if self.policy is None else self.policy(frames, generator)

    def transform_clip(self, clip: torch.Tensor, generator=None) -> torch.Tensor:
        """Random resized crop, flip and erasing of a normalised `(T, C, H, W)` clip."""
        generator = as_numpy_random(generator)
        height, width = clip.shape[-2:]
        if self.random_resized_crop:
            box = draw_resized_crop_box(height, width, generator, self.crop_scale, self.crop_ratio)
            clip = resized_crop(clip, box, (height, width))
        if self.flip_probability > 0 and generator.random() < self.flip_probability:
            clip = horizontal_flip(clip)
        if self.erasing_probability > 0:
            clip = random_erasing(clip.contiguous(), generator, self.erasing_probability)
        return clip

    def sample_frames(self, total_frames: int, num_frames: int, frame_stride: int, generator=None) -> None:
        """Fine-tuning keeps the processor's `"train"` sampling: `None`."""
        return None

    @classmethod
    def from_names(cls, names: Sequence[str], randaugment: str = DEFAULT_RANDAUGMENT) -> "FineTuningAugmentation":
        """The transforms named in `names` (of `FINE_TUNE_AUGMENTATIONS`; `mixup_cutmix` is per batch, see
        [`MixupCutmix`], and is accepted but not part of this per-clip object)."""
        names = check_augmentation_names(names, FINE_TUNE_AUGMENTATIONS)
        return cls(
            randaugment=randaugment if "randaugment" in names else None,
            random_resized_crop="random_resized_crop" in names,
            flip_probability=0.5 if "horizontal_flip" in names else 0.0,
            erasing_probability=0.25 if "random_erasing" in names else 0.0,
        )

    @property
    def is_identity(self) -> bool:
        """Whether every per-clip transform is off."""
        return (
            self.policy is None
            and not self.random_resized_crop
            and self.flip_probability == 0
            and self.erasing_probability == 0
        )


def check_augmentation_names(names: Sequence[str], known: Sequence[str]) -> frozenset[str]:
    """`names` as a set, after checking that each is one of `known` (a `ValueError` names the unknown ones)."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"Unknown augmentation(s) {', '.join(map(repr, unknown))}; choose from {', '.join(known)}.")
    return frozenset(names)


@dataclass
class PretrainingAugmentation:
    """The official pretraining transforms of one clip: the random temporal start and the multi-scale crop.

    Args:
        multiscale_crop (`bool`, defaults to `True`): the multi-scale crop to the processor's frame size.
        random_temporal_start (`bool`, defaults to `True`): frames from a random start at the stride (else the
            processor's sampling).
    """

    multiscale_crop: bool = True
    random_temporal_start: bool = True
    scales: tuple[float, ...] = MULTISCALE_CROP_SCALES

    def transform_frames(self, frames: Sequence, size: tuple[int, int], generator=None) -> list[np.ndarray]:
        if not self.multiscale_crop:
            return list(frames)
        if size[0] != size[1]:
            raise ValueError(f"The multi-scale crop makes square frames; the processor's size is {size}.")
        first = _to_image(frames[0])
        crop = draw_multiscale_crop(first.size[0], first.size[1], generator, size[0], self.scales)
        return multiscale_crop(frames, crop, size[0])

    def transform_clip(self, clip: torch.Tensor, generator=None) -> torch.Tensor:
        return clip

    def sample_frames(
        self, total_frames: int, num_frames: int, frame_stride: int, generator=None
    ) -> FrameSampling | None:
        """The official random temporal start ([`pretraining_frame_indices`]); the audio spans the sampled frames
        plus one stride (`None` when off: the processor's sampling mode is used)."""
        if not self.random_temporal_start:
            return None
        indices, _ = pretraining_frame_indices(total_frames, num_frames, frame_stride, generator)
        audio_end = min(int(indices[-1]) + frame_stride, total_frames - 1)
        return FrameSampling(indices, int(indices[0]), audio_end, total_frames)

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "PretrainingAugmentation":
        """The transforms named in `names` (of `PRETRAINING_AUGMENTATIONS`; the audio gain is the processor's)."""
        names = check_augmentation_names(names, PRETRAINING_AUGMENTATIONS)
        return cls(multiscale_crop="multiscale_crop" in names, random_temporal_start="random_temporal_start" in names)


# --------------------------------------------------------------------------------------------------------------------
# Preview
# --------------------------------------------------------------------------------------------------------------------


def save_clip_grid(
    clips: Sequence[torch.Tensor],
    path,
    captions: Sequence[str] | None = None,
    image_mean: Sequence[float] = (0.485, 0.456, 0.406),
    image_std: Sequence[float] = (0.229, 0.224, 0.225),
    caption_height: int = 14,
) -> str:
    """Write normalised `(T, C, H, W)` clips as one PNG: a row per clip (its frames left to right), each row under
    its caption (e.g. the label). Pixel values are un-normalised with `image_mean` / `image_std` and clipped."""
    from PIL import Image, ImageDraw

    if not clips:
        raise ValueError("No clips to preview.")
    num_frames, _, height, width = clips[0].shape
    mean = torch.tensor(image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_std).view(1, 3, 1, 1)
    row_height = caption_height + height
    grid = Image.new("RGB", (num_frames * width, len(clips) * row_height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for row, clip in enumerate(clips):
        if clip.shape != clips[0].shape:
            raise ValueError(f"Clip {row} has shape {tuple(clip.shape)}, clip 0 {tuple(clips[0].shape)}.")
        pixels = ((clip.float().cpu() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        for column, frame in enumerate(pixels.permute(0, 2, 3, 1).numpy()):
            grid.paste(Image.fromarray(frame), (column * width, row * row_height + caption_height))
        if captions is not None:
            draw.text((2, row * row_height + 1), str(captions[row]), fill=(0, 0, 0))
    grid.save(path, format="PNG")
    return str(path)


def save_augmentation_preview(dataset, path, num_clips: int = 4, id2label=None) -> str:
    """Write the first `num_clips` items of a training dataset (augmented as training sees them, before the batch
    mixing) as a PNG grid with [`save_clip_grid`], captioned with their index and label name."""
    num_clips = min(int(num_clips), len(dataset))
    if num_clips < 1:
        raise ValueError(f"The preview needs at least one clip, got num_clips={num_clips} for {len(dataset)} videos.")
    clips, captions = [], []
    for index in range(num_clips):
        item = dataset[index]
        pixel_values = item["pixel_values"]
        clips.append(pixel_values[0] if pixel_values.ndim == 5 else pixel_values)
        label = item.get("labels")
        if label is not None and label.ndim == 0:
            label = int(label)
            label = f"{label} {id2label[label]}" if id2label and label in id2label else str(label)
        captions.append(f"#{index}" + ("" if label is None else f" label {label}"))
    processor = getattr(dataset, "processor", None)
    video_processor = getattr(processor, "video_processor", None)
    mean = getattr(video_processor, "image_mean", (0.485, 0.456, 0.406))
    std = getattr(video_processor, "image_std", (0.229, 0.224, 0.225))
    return save_clip_grid(clips, path, captions, mean, std)


__all__ = [
    "DEFAULT_RANDAUGMENT",
    "FINE_TUNE_AUGMENTATIONS",
    "FINE_TUNE_TRAIN_ORDER",
    "FineTuningAugmentation",
    "MixParameters",
    "MixupCutmix",
    "PRETRAINING_AUGMENTATIONS",
    "PretrainingAugmentation",
    "RANDAUGMENT_OPS",
    "RandAugmentPolicy",
    "RandAugmentStep",
    "apply_randaugment_op",
    "check_augmentation_names",
    "cutmix_lambda",
    "draw_cutmix_box",
    "draw_erasing_box",
    "draw_multiscale_crop",
    "draw_resized_crop_box",
    "erase_box",
    "horizontal_flip",
    "mix_batch",
    "mixed_targets",
    "multiscale_crop",
    "multiscale_crop_offsets",
    "multiscale_crop_sizes",
    "pretraining_frame_indices",
    "randaugment_level_args",
    "random_erasing",
    "resized_crop",
    "save_augmentation_preview",
    "save_clip_grid",
    "smoothed_one_hot",
    "soft_target_cross_entropy",
]
