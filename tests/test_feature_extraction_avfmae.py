# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVFMAEFeatureExtractor: official spectrograms, any input layout and rate, typed errors, serialisation."""

import json
import os
import unittest

import numpy as np
import pytest
import torch
import torchaudio
from safetensors.numpy import load_file

from avfmae_hf import AudioTooShortError, AVFMAEConfig, AVFMAEFeatureExtractor, UnusableAudioError
from avfmae_hf.feature_extraction_avfmae import draw_audio_gain, kaldi_fbank
from tests.transformers_suite import import_common


FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "official", "audio_fbank")
OFFICIAL_AUDIO_GAIN = 1.0971578369693007
PADDED_ROW_VALUE = (0 - (-4.2677393)) / (2 * 4.5689974)


@pytest.fixture(scope="module")
def official():
    return load_file(os.path.join(FIXTURE_DIR, "audio_fbank.safetensors"))


@pytest.fixture(scope="module")
def extractor():
    return AVFMAEFeatureExtractor()


def kaldi_reference(waveform: torch.Tensor) -> torch.Tensor:
    """The fbank call of architecture.md §11.3 on a mono 16 kHz waveform, without padding or normalisation."""
    return torchaudio.compliance.kaldi.fbank(
        (waveform - waveform.mean())[None],
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )


@pytest.mark.parametrize(
    "sampling_rate, num_mel_bins, frame_length, frame_shift",
    [(16000, 128, 25.0, 10.0), (16000, 64, 25.0, 10.0), (8000, 40, 30.0, 12.5), (22050, 80, 20.0, 5.0)],
)
def test_kaldi_fbank_is_torchaudios_fbank_bit_for_bit(sampling_rate, num_mel_bins, frame_length, frame_shift):
    """The cached-table fbank gives exactly torchaudio's values, for settings other than the official one too, for
    waveforms of one window, of a few frames and of whole clips, loud and quiet (the log floor), in a slice with a
    storage offset (as `compute_fbank` passes it)."""
    generator = torch.Generator().manual_seed(sampling_rate + num_mel_bins)
    window_size = int(sampling_rate * frame_length * 0.001)
    for num_samples in (window_size, window_size + 37, 3 * sampling_rate + 11):
        for scale in (1.0, 1e-3, 0.0):
            waveform = torch.randn(num_samples + 5, generator=generator)[5:] * scale
            expected = torchaudio.compliance.kaldi.fbank(
                waveform[None],
                htk_compat=True,
                sample_frequency=sampling_rate,
                use_energy=False,
                window_type="hanning",
                num_mel_bins=num_mel_bins,
                dither=0.0,
                frame_length=frame_length,
                frame_shift=frame_shift,
            )
            actual = kaldi_fbank(waveform, sampling_rate, num_mel_bins, frame_length, frame_shift)
            assert actual.dtype == torch.float32 and actual.shape == expected.shape
            assert torch.equal(actual, expected), (num_samples, scale)
    with pytest.raises(ValueError, match="at least one"):
        kaldi_fbank(torch.zeros(window_size - 1), sampling_rate, num_mel_bins, frame_length, frame_shift)


@pytest.mark.parametrize("duration", ["2s", "3s"])
def test_reproduces_official_spectrogram(extractor, official, duration):
    audio_values = extractor(official[f"waveform_{duration}"], sampling_rate=16000, return_tensors="np")[
        "audio_values"
    ]
    assert audio_values.shape == (1, 1, 256, 128) and audio_values.dtype == np.float32
    np.testing.assert_allclose(audio_values[0], official[f"spectrogram_{duration}"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("duration", ["2s", "3s"])
def test_intermediate_fbank_matches_official(extractor, official, duration):
    """Before normalisation: zero padding (2 s) and truncation (3 s) at 256 frames, in log-mel units."""
    waveform = extractor.prepare_waveform(official[f"waveform_{duration}"], 16000)
    raw = extractor.compute_fbank(waveform)[0] * (2 * extractor.std) + extractor.mean
    np.testing.assert_allclose(raw.numpy(), official[f"fbank_raw_{duration}"], atol=1e-3, rtol=0)


def test_padding_happens_before_normalisation(extractor, official):
    audio_values = extractor(official["waveform_2s"], sampling_rate=16000)["audio_values"][0, 0]
    # 32000 samples give 198 fbank frames; rows 198..255 are padding, normalised like zeros.
    np.testing.assert_allclose(audio_values[198:], PADDED_ROW_VALUE, atol=1e-6)
    assert np.all(np.abs(audio_values[:198] - PADDED_ROW_VALUE).max(axis=1) > 1e-3)


def test_audio_gain_jitter_off_by_default(extractor, official):
    first = extractor(official["waveform_2s"], sampling_rate=16000)["audio_values"]
    second = extractor(official["waveform_2s"], sampling_rate=16000)["audio_values"]
    np.testing.assert_array_equal(first, second)
    assert extractor.audio_gain_jitter is False


def test_official_random_gain_with_given_audio_gain(extractor, official):
    audio_values = extractor(official["waveform_2s"], sampling_rate=16000, audio_gains=OFFICIAL_AUDIO_GAIN)
    np.testing.assert_allclose(
        audio_values["audio_values"][0], official["spectrogram_2s_rollmag_npseed0"], atol=1e-4, rtol=0
    )


def test_official_random_gain_from_seeded_generator(extractor, official):
    """An int seed (or a RandomState) draws the official stream: np.random.seed(0) -> 1.0971578369693007."""
    assert draw_audio_gain(0) == OFFICIAL_AUDIO_GAIN
    assert draw_audio_gain(np.random.RandomState(0)) == OFFICIAL_AUDIO_GAIN
    audio_values = extractor(official["waveform_2s"], sampling_rate=16000, audio_gain_jitter=True, generator=0)
    np.testing.assert_allclose(
        audio_values["audio_values"][0], official["spectrogram_2s_rollmag_npseed0"], atol=1e-4, rtol=0
    )
    jittered = AVFMAEFeatureExtractor(audio_gain_jitter=True)
    gains = jittered.draw_audio_gains(200, generator=np.random.default_rng(1))
    assert all(0.5 < gain < 1.5 for gain in gains) and len(set(gains)) == 200


def test_channels_are_averaged_in_either_layout(extractor, official):
    mono = official["waveform_3s"][0]
    stereo = np.stack([mono + 0.1, mono - 0.1])  # mean is `mono`
    expected = extractor(mono, sampling_rate=16000)["audio_values"]
    for layout in (stereo, stereo.T, torch.from_numpy(stereo)):
        np.testing.assert_allclose(extractor(layout, sampling_rate=16000)["audio_values"], expected, atol=1e-5)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_sampling_rate_is_resampled_with_torchaudio(extractor, rate):
    seconds = np.arange(int(2.0 * rate)) / rate
    waveform = (0.3 * np.sin(2 * np.pi * 440 * seconds) + 0.1 * np.sin(2 * np.pi * 1000 * seconds)).astype(np.float32)
    audio_values = extractor(waveform, sampling_rate=rate, return_tensors="pt")["audio_values"]
    resampled = torchaudio.functional.resample(torch.from_numpy(waveform), rate, 16000)
    expected = (kaldi_reference(resampled) - extractor.mean) / (2 * extractor.std)
    torch.testing.assert_close(audio_values[0, 0, : expected.shape[0]], expected, atol=1e-4, rtol=0)
    # The same tones recorded at 16 kHz give nearly the same spectrogram.
    native = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    native += (0.1 * np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000)).astype(np.float32)
    reference = extractor(native, sampling_rate=16000, return_tensors="pt")["audio_values"]
    loud = reference[0, 0, 5:190] > reference[0, 0, 5:190].mean()
    assert (audio_values[0, 0, 5:190] - reference[0, 0, 5:190])[loud].abs().median() < 0.02


def test_input_types_and_batches(extractor, official):
    waveform = official["waveform_2s"][0]
    expected = extractor(waveform, sampling_rate=16000)["audio_values"]
    for item in (torch.from_numpy(waveform), waveform.tolist(), waveform.astype(np.float64)):
        np.testing.assert_allclose(extractor(item, sampling_rate=16000)["audio_values"], expected, atol=1e-5)
    # 16-bit PCM is scaled to [-1, 1] (unscaled, it would be 2 ln(32768) / (2 * 4.57) = 2.27 higher); quantisation
    # noise moves only the quietest bins.
    pcm = np.round(waveform * 32768).clip(-32768, 32767).astype(np.int16)
    pcm_values = extractor(pcm, sampling_rate=16000)["audio_values"]
    assert np.median(np.abs(pcm_values - expected)) < 1e-3 and np.abs(pcm_values - expected).max() < 0.05
    batch = extractor([waveform, official["waveform_3s"]], sampling_rate=16000, return_tensors="pt")
    assert batch["audio_values"].shape == (2, 1, 256, 128) and isinstance(batch["audio_values"], torch.Tensor)


def test_reads_audio_files_at_their_own_rate(extractor, processor_wav_file):
    audio_values = extractor(processor_wav_file, return_tensors="pt")["audio_values"]
    assert audio_values.shape == (1, 1, 256, 128)
    # 2 s of audio: 198 frames of signal (plus a few from the AAC padding), then padding rows.
    assert torch.allclose(audio_values[0, 0, 210:], torch.tensor(PADDED_ROW_VALUE), atol=1e-6)
    assert (audio_values[0, 0, :190] - PADDED_ROW_VALUE).abs().amax(dim=1).min() > 1e-3


def test_missing_sampling_rate_warns(extractor, official, caplog):
    with caplog.at_level("WARNING"):
        AVFMAEFeatureExtractor()(official["waveform_2s"])
    assert "sampling_rate" in caplog.text


@pytest.mark.parametrize(
    ("audio", "error", "words"),
    [
        (np.zeros(0, np.float32), UnusableAudioError, "empty"),
        (np.array([0.1, np.nan] * 1000, np.float32), UnusableAudioError, "NaN"),
        (np.array([0.1, np.inf] * 1000, np.float32), UnusableAudioError, "infinite"),
        (np.zeros(399, np.float32), AudioTooShortError, "400 samples"),
        (np.zeros((2, 3, 1000), np.float32), UnusableAudioError, "shape"),
        (np.ones(1000, bool), UnusableAudioError, "dtype"),
    ],
)
def test_unusable_audio_raises_typed_error_naming_item(extractor, audio, error, words):
    good = np.zeros(16000, np.float32)
    with pytest.raises(error) as raised:
        extractor([good, audio], sampling_rate=16000)
    assert raised.value.index == 1
    assert "item 1" in str(raised.value) and words in str(raised.value)


def test_too_short_after_resampling(extractor):
    with pytest.raises(AudioTooShortError, match="item 0"):
        extractor(np.ones(1000, np.float32), sampling_rate=44100)  # 363 samples at 16 kHz
    extractor(np.ones(1200, np.float32), sampling_rate=44100)  # 436 samples: one fbank frame


def test_save_load_round_trip(tmp_path):
    from transformers import AutoFeatureExtractor

    extractor = AVFMAEFeatureExtractor(max_length=128, audio_gain_jitter=True)
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "AVFMAEFeatureExtractor" and saved["max_length"] == 128
    for loaded in (AVFMAEFeatureExtractor.from_pretrained(tmp_path), AutoFeatureExtractor.from_pretrained(tmp_path)):
        assert isinstance(loaded, AVFMAEFeatureExtractor)
        assert loaded.to_dict() == extractor.to_dict()
    assert AVFMAEConfig.model_type == "avfmae"


def test_unknown_and_unsupported_call_arguments_raise(extractor):
    waveform = np.zeros(16000, np.float32)
    with pytest.raises(TypeError, match="unknown arguments"):
        extractor(waveform, sampling_rate=16000, audio_gain=2.0)
    with pytest.raises(ValueError, match="cannot honour"):
        extractor(waveform, sampling_rate=16000, padding="max_length")


class AVFMAEFeatureExtractionTester:
    """Inputs for transformers' feature-extraction mixins: spectrogram-like `(length, feature_size)` sequences, which
    `pad` (inherited from `SequenceFeatureExtractor`) pads and truncates."""

    def __init__(self, batch_size=7, min_seq_length=40, max_seq_length=200, feature_size=24):
        self.batch_size = batch_size
        self.min_seq_length = min_seq_length
        self.max_seq_length = max_seq_length
        self.seq_length_diff = (max_seq_length - min_seq_length) // (batch_size - 1)
        self.feature_size = feature_size

    def prepare_feat_extract_dict(self):
        return {"feature_size": self.feature_size, "num_mel_bins": self.feature_size, "max_length": 64}

    def prepare_inputs_for_common(self, equal_length=False, numpify=False):
        rng = np.random.default_rng(0)
        lengths = (
            [self.max_seq_length] * self.batch_size
            if equal_length
            else range(self.min_seq_length, self.max_seq_length, self.seq_length_diff)
        )
        inputs = [rng.random((length, self.feature_size)).tolist() for length in lengths]
        return [np.asarray(x) for x in inputs] if numpify else inputs


class AVFMAEFeatureExtractionTest(
    import_common("test_sequence_feature_extraction_common").SequenceFeatureExtractionTestMixin, unittest.TestCase
):
    feature_extraction_class = AVFMAEFeatureExtractor

    def setUp(self):
        self.feat_extract_tester = AVFMAEFeatureExtractionTester()
