# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVF-MAE++ audio feature extractor: a waveform in, the official normalised Kaldi log-mel spectrogram out."""

import functools
import os
from collections.abc import Sequence

import numpy as np
import torch
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType, logging

from .errors_avfmae import AudioTooShortError, UnusableAudioError
from .random_avfmae import RandomSource, as_numpy_random
from .video_decoding_avfmae import load_audio_file


logger = logging.get_logger(__name__)

# transformers' audio call options that a fixed-length spectrogram has no use for: accepted unset, raise when set.
UNSUPPORTED_AUDIO_OPTIONS = (
    "padding",
    "max_length",
    "truncation",
    "pad_to_multiple_of",
    "return_attention_mask",
    "device",
    "load_audio_backend",
    "raw_speech",
)
# Integer PCM is scaled to [-1, 1] as torchaudio.load does for the official WAV files.
INTEGER_AUDIO_SCALE = {np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31, np.dtype(np.int8): 2**7}


def import_torchaudio():
    """torchaudio (imported on use, inside `try` so that Hub code loading does not require it)."""
    try:
        import torchaudio
    except ImportError as error:
        raise ImportError("The audio features need torchaudio: `pip install torchaudio`.") from error
    return torchaudio


# Kaldi's filterbank settings that the official code leaves at their defaults
PREEMPHASIS = 0.97
LOWEST_MEL_FREQUENCY = 20.0


@functools.cache
def _fbank_tables(window_size: int, padded_size: int, num_mel_bins: int, sampling_rate: int):
    """The Hanning window and the mel filterbank `(num_mel_bins, padded_size // 2 + 1)` of one fbank setting,
    made once: building them costs a third of an fbank of a 2.56 s clip."""
    window = torch.hann_window(window_size, periodic=False, dtype=torch.float32)
    banks, _ = import_torchaudio().compliance.kaldi.get_mel_banks(
        num_mel_bins, padded_size, float(sampling_rate), LOWEST_MEL_FREQUENCY, 0.0, 100.0, -500.0, 1.0
    )
    # no filter reaches the Nyquist bin: a zero column for it. Kept `(num_mel_bins, bins)` and used transposed, the
    # layout torchaudio multiplies with: another layout takes another BLAS path, whose sums round differently.
    banks = torch.nn.functional.pad(banks.to(torch.float32), (0, 1))
    return window, banks


def fbank_frame_samples(sampling_rate: int, frame_length: float, frame_shift: float) -> tuple[int, int]:
    """Samples per fbank window and per hop, as Kaldi rounds them (down)."""
    return int(sampling_rate * frame_length * 0.001), int(sampling_rate * frame_shift * 0.001)


def kaldi_fbank(
    waveform: torch.Tensor, sampling_rate: int, num_mel_bins: int, frame_length: float, frame_shift: float
) -> torch.Tensor:
    """Log mel filterbank energies `(num_frames, num_mel_bins)` of a float32 waveform `(num_samples,)`, the values of
    `torchaudio.compliance.kaldi.fbank(waveform[None], htk_compat=True, use_energy=False, window_type="hanning",
    dither=0.0, ...)` bit for bit (tested), with the window and the filterbank made once per setting and without the
    frame energies that the official settings leave unused. Per frame: remove its mean, pre-emphasis
    `x[j] - 0.97 x[j - 1]` (the first sample against itself), Hanning window, zero-padding to a power of two, power
    spectrum, mel filters, log (floored at float32's epsilon). Frames that would pass the end are not made."""
    window_size, shift = fbank_frame_samples(sampling_rate, frame_length, frame_shift)
    padded_size = 1 << (window_size - 1).bit_length()
    if waveform.ndim != 1 or waveform.shape[0] < window_size:
        raise ValueError(
            f"kaldi_fbank takes a 1-D waveform of at least one {frame_length:g} ms window ({window_size} samples), "
            f"got shape {tuple(waveform.shape)}."
        )
    num_frames = 1 + (waveform.shape[0] - window_size) // shift
    frames = waveform.as_strided((num_frames, window_size), (shift * waveform.stride(0), waveform.stride(0)))
    frames = frames - frames.mean(dim=1, keepdim=True)
    frames = frames - PREEMPHASIS * torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    window, banks = _fbank_tables(window_size, padded_size, num_mel_bins, sampling_rate)
    frames = torch.nn.functional.pad(frames * window, (0, padded_size - window_size))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    return torch.mm(power, banks.T).clamp_min(torch.finfo(torch.float32).eps).log()


def draw_audio_gain(generator: RandomSource) -> float:
    """One draw of the official random audio gain, Beta(10, 10) + 0.5 (a value in (0.5, 1.5)).

    `generator` as in [`~random_avfmae.as_numpy_random`]: an `int` seeds a `RandomState`, so `draw_audio_gain(0)`
    equals the official code's first draw after `np.random.seed(0)` (1.0971578369693007).
    """
    return float(as_numpy_random(generator).beta(10, 10) + 0.5)


class AVFMAEFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns waveforms into the audio input of AVF-MAE++, exactly as the official dataset code does (architecture.md
    §11.3): downmix to mono, resample to 16 kHz (`torchaudio.functional.resample`), subtract the mean, the values of
    `torchaudio.compliance.kaldi.fbank` ([`kaldi_fbank`]; HTK-compatible, Hanning window, 25 ms frames every 10 ms,
    128 mel bins, no dither, no energy), zero-pad at the end or cut to `max_length` frames, then normalise with the AudioSet
    statistics as `(fbank - mean) / (2 * std)`. Padding happens before the normalisation, as in the official code,
    so padded rows hold `(0 - mean) / (2 * std)` (about 0.467), not 0.

    The official code also multiplies every waveform by a random gain, Beta(10, 10) + 0.5, in training *and* at test
    time. That makes test predictions random, so it is off here by default; `audio_gain_jitter=True` reproduces it
    (with a seedable generator), and `audio_gains=[...]` applies given gains.

    Args:
        feature_size (`int`, defaults to 128): mel bins per frame (same as `num_mel_bins`).
        sampling_rate (`int`, defaults to 16000): the rate the fbank is computed at; any input rate is resampled.
        padding_value (`float`, defaults to 0.0): value of padded fbank rows before normalisation.
        num_mel_bins (`int`, defaults to 128): mel bins of the fbank.
        max_length (`int`, defaults to 256): fbank frames per clip (2.56 s at a 10 ms shift).
        mean (`float`, defaults to -4.2677393), std (`float`, defaults to 4.5689974): AudioSet statistics used by the
            official normalisation `(x - mean) / (2 * std)`.
        frame_length (`float`, defaults to 25.0), frame_shift (`float`, defaults to 10.0): fbank window and hop in
            milliseconds.
        audio_gain_jitter (`bool`, defaults to `False`): apply the official random gain.
        return_attention_mask (`bool`, defaults to `False`): the model takes no audio mask; kept for the base class.

    Inputs (`__call__`): one item or a list of items. An item is a 1-D waveform (mono), a 2-D waveform (several
    channels; the shorter axis is taken as the channel axis, so `(channels, samples)` and `(samples, channels)` both
    work), a list of floats, or a path / bytes of an audio file or a video container whose first audio stream is read
    (at its own rate). Floating waveforms are taken as they are (the official files are in [-1, 1]); int8/16/32 PCM is
    scaled to [-1, 1].

    Output: `BatchFeature` with `audio_values` of shape `(batch_size, 1, max_length, num_mel_bins)`, float32.
    """

    model_input_names = ["audio_values"]

    def __init__(
        self,
        feature_size: int = 128,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        num_mel_bins: int = 128,
        max_length: int = 256,
        mean: float = -4.2677393,
        std: float = 4.5689974,
        frame_length: float = 25.0,
        frame_shift: float = 10.0,
        audio_gain_jitter: bool = False,
        return_attention_mask: bool = False,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.mean = mean
        self.std = std
        self.frame_length = frame_length
        self.frame_shift = frame_shift
        self.audio_gain_jitter = audio_gain_jitter

    @property
    def min_num_samples(self) -> int:
        """Samples in one fbank window at `sampling_rate` (400 at 16 kHz): shorter audio has no fbank frame."""
        return int(round(self.sampling_rate * self.frame_length / 1000))

    def prepare_waveform(
        self,
        audio: object,
        sampling_rate: int | None = None,
        index: int | None = None,
        name: object = None,
    ) -> torch.Tensor:
        """Check one item, read it if it is a file, downmix it to mono and resample it to `sampling_rate`.

        Returns:
            `torch.Tensor` of shape `(num_samples,)`, float32.
        """
        if isinstance(audio, (str, os.PathLike, bytes, bytearray)):
            name = name if name is not None else audio
            audio, sampling_rate = load_audio_file(
                bytes(audio) if isinstance(audio, bytearray) else audio, index, name
            )
        waveform = _as_float_array(audio, index, name)
        if waveform.ndim == 2:
            channel_axis = 0 if waveform.shape[0] <= waveform.shape[1] else 1
            waveform = waveform.mean(axis=channel_axis)
        if waveform.size == 0:
            raise UnusableAudioError("the waveform is empty.", index, name)
        if not np.all(np.isfinite(waveform)):
            raise UnusableAudioError("the waveform contains NaN or infinite values.", index, name)
        if sampling_rate is None:
            logger.warning(
                f"No sampling_rate was given for the audio; assuming {self.sampling_rate} Hz. Pass `sampling_rate` to "
                f"avoid silent errors."
            )
            sampling_rate = self.sampling_rate
        if float(sampling_rate) != int(sampling_rate) or int(sampling_rate) <= 0:
            raise UnusableAudioError(
                f"the sampling rate must be a positive integer, got {sampling_rate}.", index, name
            )
        sampling_rate = int(sampling_rate)
        waveform = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        if sampling_rate != self.sampling_rate:
            waveform = import_torchaudio().functional.resample(waveform, sampling_rate, self.sampling_rate)
        if waveform.shape[0] < self.min_num_samples:
            raise AudioTooShortError(
                f"the audio has {waveform.shape[0]} samples at {self.sampling_rate} Hz, fewer than one "
                f"{self.frame_length:g} ms fbank window ({self.min_num_samples} samples).",
                index,
                name,
            )
        return waveform

    def compute_fbank(self, waveform: torch.Tensor, audio_gain: float | None = None) -> torch.Tensor:
        """The official spectrogram of one mono waveform at `sampling_rate`.

        Args:
            waveform (`torch.Tensor` of shape `(num_samples,)`): at least `min_num_samples` samples.
            audio_gain (`float`, *optional*): gain applied after removing the mean (the official random gain).

        Returns:
            `torch.Tensor` of shape `(1, max_length, num_mel_bins)`, float32.
        """
        waveform = waveform.to(torch.float32)
        waveform = waveform - waveform.mean()
        if audio_gain is not None:
            waveform = waveform * audio_gain
        # Each fbank frame depends only on its own samples, and frames past `max_length` are cut anyway: cut the
        # waveform to the samples of the first `max_length` frames (after removing the mean of the whole slice).
        window, shift = fbank_frame_samples(self.sampling_rate, self.frame_length, self.frame_shift)
        waveform = waveform[: (self.max_length - 1) * shift + window]
        fbank = kaldi_fbank(waveform, self.sampling_rate, self.num_mel_bins, self.frame_length, self.frame_shift)
        num_frames = fbank.shape[0]
        if num_frames < self.max_length:
            padding = fbank.new_full((self.max_length - num_frames, self.num_mel_bins), self.padding_value)
            fbank = torch.cat([fbank, padding], dim=0)
        else:
            fbank = fbank[: self.max_length]
        fbank = (fbank - self.mean) / (self.std * 2)
        return fbank[None]

    def draw_audio_gains(
        self,
        batch_size: int,
        audio_gain_jitter: bool | None = None,
        generator: RandomSource = None,
        audio_gains: Sequence[float] | float | None = None,
    ) -> list[float | None]:
        """Gains for a batch: the given `audio_gains`, random draws when `audio_gain_jitter`, else none."""
        if audio_gains is not None:
            audio_gains = (
                [float(audio_gains)] * batch_size if np.isscalar(audio_gains) else [float(m) for m in audio_gains]
            )
            if len(audio_gains) != batch_size:
                raise ValueError(f"Got {len(audio_gains)} audio gains for a batch of {batch_size} waveforms.")
            return audio_gains
        audio_gain_jitter = self.audio_gain_jitter if audio_gain_jitter is None else audio_gain_jitter
        if not audio_gain_jitter:
            return [None] * batch_size
        generator = as_numpy_random(generator)
        return [draw_audio_gain(generator) for _ in range(batch_size)]

    def check_unsupported(self, **kwargs) -> None:
        """Raise for arguments this extractor does not take: unknown names (`TypeError`) and transformers' audio
        options that do not apply to a fixed-length spectrogram (`ValueError` when set)."""
        unknown = sorted(set(kwargs) - set(UNSUPPORTED_AUDIO_OPTIONS))
        if unknown:
            raise TypeError(f"AVFMAEFeatureExtractor got unknown arguments {unknown}.")
        given = {key: value for key, value in kwargs.items() if value is not None and value is not False}
        if given:
            raise ValueError(
                f"AVFMAEFeatureExtractor cannot honour {given}: the spectrogram is always {self.max_length} frames "
                f"(set `max_length` on the extractor), computed on the CPU, without an attention mask."
            )

    def __call__(
        self,
        raw_speech: object,
        sampling_rate: int | None = None,
        return_tensors: str | TensorType | None = None,
        audio_gain_jitter: bool | None = None,
        generator: RandomSource = None,
        audio_gains: Sequence[float] | float | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Compute `audio_values` for one waveform or a list of waveforms.

        Args:
            raw_speech: one item or a list of items (see the class docstring).
            sampling_rate (`int`, *optional*): rate of the waveforms given as arrays (files use their own rate).
                When missing, `sampling_rate` of the extractor is assumed, with a warning.
            return_tensors (`str` or [`~utils.TensorType`], *optional*): `"pt"` for torch tensors, `"np"` (or
                `None`) for numpy arrays.
            audio_gain_jitter (`bool`, *optional*): override the instance setting for this call.
            generator (*optional*): source of the random gains: a `numpy.random.Generator`, a
                `numpy.random.RandomState` or an `int` seed (seeds a `RandomState`, the official stream).
            audio_gains (`float` or list of `float`, *optional*): explicit gains, one per waveform.

        Returns:
            [`BatchFeature`] with `audio_values` of shape `(batch_size, 1, max_length, num_mel_bins)`.
        """
        self.check_unsupported(**kwargs)
        items = _split_batch(raw_speech)
        gains = self.draw_audio_gains(len(items), audio_gain_jitter, generator, audio_gains)
        features = []
        for index, (item, gain) in enumerate(zip(items, gains, strict=True)):
            waveform = self.prepare_waveform(item, sampling_rate, index=index)
            features.append(self.compute_fbank(waveform, gain))
        audio_values = torch.stack(features).numpy()
        return BatchFeature({"audio_values": audio_values}, tensor_type=return_tensors)


def _split_batch(raw_speech: object) -> list:
    """A list of items from one item or a batch (see [`AVFMAEFeatureExtractor`])."""
    if isinstance(raw_speech, (list, tuple)):
        if len(raw_speech) == 0:
            raise UnusableAudioError("the audio batch is empty.")
        if all(isinstance(value, (int, float, np.number)) for value in raw_speech):
            return [np.asarray(raw_speech, dtype=np.float32)]
        return list(raw_speech)
    return [raw_speech]


def _as_float_array(audio: object, index: int | None, name: object) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        if audio.dtype == torch.bfloat16 or audio.dtype == torch.float16:
            audio = audio.float()
        audio = audio.numpy()
    if isinstance(audio, (list, tuple)):
        try:
            audio = np.asarray(audio, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise UnusableAudioError("the waveform list is not a list of numbers.", index, name) from error
    if not isinstance(audio, np.ndarray):
        raise UnusableAudioError(
            f"unsupported audio input of type {type(audio).__name__}; pass an array, a tensor or a file path.",
            index,
            name,
        )
    if audio.ndim == 0 or audio.ndim > 2:
        raise UnusableAudioError(
            f"a waveform must be 1-D (samples) or 2-D (channels and samples), got shape {tuple(audio.shape)}; pass a "
            f"batch as a list.",
            index,
            name,
        )
    if audio.dtype in INTEGER_AUDIO_SCALE:
        return audio.astype(np.float32) / INTEGER_AUDIO_SCALE[audio.dtype]
    if audio.dtype == np.uint8:
        return (audio.astype(np.float32) - 128.0) / 128.0
    if not np.issubdtype(audio.dtype, np.floating):
        raise UnusableAudioError(f"the waveform has dtype {audio.dtype}; expected floating point or PCM.", index, name)
    return audio


__all__ = ["AVFMAEFeatureExtractor", "draw_audio_gain", "import_torchaudio", "kaldi_fbank"]
