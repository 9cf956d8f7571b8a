# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""AVFMAEProcessor: one call from videos to model inputs, audio aligned to the sampled frames, bad items named,
serialisation and AutoProcessor."""

import logging
import unittest

import numpy as np
import pytest
import torch

from avfmae_hf import (
    AudioTooShortError,
    AVFMAEConfig,
    AVFMAEFeatureExtractor,
    AVFMAEProcessor,
    AVFMAEVideoProcessor,
    CorruptVideoError,
    InputNotFoundError,
    MissingAudioError,
)
from avfmae_hf.feature_extraction_avfmae import draw_audio_gain
from avfmae_hf.video_decoding_avfmae import open_video
from tests.media import synthetic
from tests.transformers_suite import import_common


@pytest.fixture(scope="module")
def processor():
    return AVFMAEProcessor()


def expected_audio_values(extractor: AVFMAEFeatureExtractor, path: str, span: tuple[int, int], total_frames: int):
    """The official rule written out: frame i of n at time i / (n - 1) -> sample int(t * N)."""
    with open_video(path) as source:
        waveform, rate = source.read_audio()
    waveform = extractor.prepare_waveform(waveform, rate)
    start = int(span[0] / (total_frames - 1.0) * waveform.shape[0])
    end = int(span[1] / (total_frames - 1.0) * waveform.shape[0])
    return extractor.compute_fbank(waveform[start:end])


def test_path_only_call_reads_the_audio_from_the_container(processor, processor_face_clip):
    inputs = processor(videos=processor_face_clip[0], return_tensors="pt")
    assert set(inputs) == {"pixel_values", "audio_values", "face_found"}
    assert inputs["pixel_values"].shape == (1, 16, 3, 160, 160) and inputs["pixel_values"].dtype == torch.float32
    assert inputs["audio_values"].shape == (1, 1, 256, 128) and inputs["audio_values"].dtype == torch.float32
    assert inputs["face_found"].tolist() == [True]
    assert processor.model_input_names == ["pixel_values", "audio_values"]
    # Centre mode: the 64 frames from frame (75 - 64) // 2 = 5, audio to one stride past the last sampled frame.
    expected = expected_audio_values(processor.feature_extractor, processor_face_clip[0], (5, 69), 75)
    torch.testing.assert_close(inputs["audio_values"][0], expected)


@pytest.mark.parametrize("clip", ["25fps", "30fps", "50fps"])
@pytest.mark.parametrize(("mode", "segment"), [("center", 0), ("test", 0), ("test", 1), ("train", 0)])
def test_audio_matches_the_sampled_frames_at_any_frame_rate(processor, processor_index_clips, clip, mode, segment):
    path = processor_index_clips[clip]
    total = {"25fps": 100, "30fps": 90, "50fps": 150}[clip]
    inputs = processor(
        videos=path, sampling_mode=mode, test_segment=segment, generator=11, do_face_crop=False, return_tensors="pt"
    )
    # The source frames the clip shows, read from their pixels (frame i is a flat grey of level 10 + 2 i), from the
    # same generator draw.
    frames = AVFMAEVideoProcessor(
        do_face_crop=False, size={"height": 48, "width": 64}, image_mean=[0] * 3, image_std=[1] * 3
    )(path, sampling_mode=mode, test_segment=segment, generator=11, return_tensors="pt")["pixel_values"][0]
    shown = [synthetic.frame_index_of(f) for f in (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()]
    # The official geometry: 16 frames from one window of 16 x 4 = 64 source frames, every 4th one in the
    # deterministic modes, spread evenly over the window in "train" ...
    steps = [later - earlier for earlier, later in zip(shown, shown[1:], strict=False)]
    assert len(shown) == 16 and shown[-1] - shown[0] < 64
    assert all(step == 4 for step in steps) if mode != "train" else all(step in (4, 5) for step in steps)
    # ... and the audio of the window: from the first sampled frame to one stride past the last (64 frames).
    expected = expected_audio_values(processor.feature_extractor, path, (shown[0], shown[0] + 64), total)
    torch.testing.assert_close(inputs["audio_values"][0], expected)


FLASHES = [(8, 10), (45, 10), (83, 10), (130, 10), (171, 10), (205, 10), (250, 10), (281, 10)]
FLASH_MODES = [
    ("center", {}),
    ("uniform", {}),
    ("sliding", {}),
    ("sliding", {"window_hop": 10}),
    ("test", {"test_segment": 0}),
    ("test", {"test_segment": 1}),
    *[("train", {"generator": seed}) for seed in range(4)],
]


@pytest.mark.parametrize("num_frames", [300, 50])
def test_bright_frames_and_loud_fbank_rows_line_up_in_every_clip(num_frames):
    """A 25 fps video whose flashes and beeps coincide: in every clip of every mode, each sampled frame is bright
    exactly when the spectrogram is loud at that frame's time.

    The rule written out: the clip's audio starts at its first sampled frame `s` (sample `int(s / (n - 1) * N)`,
    official relative rule); frame `j` shows during samples `[j, j + 1) * N / n`, whose middle falls in fbank row
    `(middle - start - 200) / 160` (25 ms windows every 10 ms). Frames next to a flash edge are not judged."""
    rate = 16000
    frames, audio, bright = synthetic.flash_beep_media(num_frames, [f for f in FLASHES if f[0] + 10 <= num_frames])
    num_samples = len(audio)
    processor = AVFMAEProcessor(
        AVFMAEVideoProcessor(size={"height": 16, "width": 40}, image_mean=[0] * 3, image_std=[1] * 3)
    )
    judged = {True: 0, False: 0}
    for mode, kwargs in FLASH_MODES:
        inputs = processor(
            videos=frames, audio=audio, sampling_rate=rate, sampling_mode=mode, return_tensors="pt", **kwargs
        )
        pixels = (inputs["pixel_values"] * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
        loudness = inputs["audio_values"][:, 0].amax(dim=2)  # (clips, 256): loudest mel bin of each row
        assert len(pixels) > (1 if mode == "sliding" and num_frames == 300 else 0)
        for clip, clip_loudness in zip(pixels, loudness, strict=True):
            shown = [synthetic.flash_frame_index_of(frame) for frame in clip]
            start = int(shown[0][0] / (num_frames - 1) * num_samples)
            for index, is_bright in shown:
                assert is_bright == bright[index]
                if bright[max(index - 1, 0)] != is_bright or bright[min(index + 1, num_frames - 1)] != is_bright:
                    continue  # next to a flash edge
                # (the relative rule starts the audio up to a frame late: the first frame's middle may precede row 0)
                row = max(round(((index + 0.5) * num_samples / num_frames - start - 200) / 160), 0)
                assert row < 256, (mode, kwargs, index)  # the spectrogram covers every sampled frame
                loud = bool(clip_loudness[max(row - 1, 0) : row + 2].min() > 0.0)
                assert loud == is_bright, (mode, kwargs, index, row)
                judged[is_bright] += 1
    assert judged[True] > 20 and judged[False] > 20


def test_sliding_windows_with_their_audio(processor, processor_index_clips):
    """Every window of every video, stacked, each with the audio of its own span, its times and its video."""
    long_path, short_path = processor_index_clips["30fps"], processor_index_clips["short"]
    inputs = processor(videos=[long_path, short_path], sampling_mode="sliding", return_tensors="pt")
    # 90 frames at 30 fps: windows at frames 0 and 26 (the last ends at frame 89); 40 frames at 25 fps: one, padded.
    assert inputs["pixel_values"].shape == (3, 16, 3, 160, 160) and inputs["audio_values"].shape == (3, 1, 256, 128)
    assert inputs["video_index"].tolist() == [0, 0, 1]
    torch.testing.assert_close(inputs["window_start"], torch.tensor([0.0, 26 / 30, 0.0]))
    torch.testing.assert_close(inputs["window_end"], torch.tensor([64 / 30, 90 / 30, 40 / 25]))
    assert inputs["window_padded"].tolist() == [False, False, True]
    assert inputs["face_found"].shape == (3,)
    spans = [(long_path, (0, 64), 90), (long_path, (26, 89), 90), (short_path, (0, 39), 40)]
    for row, (path, span, total) in enumerate(spans):
        torch.testing.assert_close(
            inputs["audio_values"][row], expected_audio_values(processor.feature_extractor, path, span, total)
        )
    hop = processor(videos=long_path, sampling_mode="sliding", window_hop=13, do_face_crop=False, return_tensors="pt")
    torch.testing.assert_close(hop["window_start"], torch.tensor([0.0, 13 / 30, 26 / 30]))
    for bad in (0, -32):
        with pytest.raises(ValueError, match="window_hop must be a positive"):
            processor(videos=long_path, sampling_mode="sliding", window_hop=bad)


def test_short_clip_is_padded_as_the_official_code_pads(processor, processor_index_clips):
    """40 frames (1.6 s): frames at the stride then the last one repeated; the whole audio, zero-padded fbank."""
    path = processor_index_clips["short"]
    inputs = processor(videos=path, sampling_mode="train", do_face_crop=False, return_tensors="pt")
    expected = expected_audio_values(processor.feature_extractor, path, (0, 39), 40)
    torch.testing.assert_close(inputs["audio_values"][0], expected)
    padded_row = (0 - processor.feature_extractor.mean) / (2 * processor.feature_extractor.std)
    assert torch.allclose(inputs["audio_values"][0, 0, 170:], torch.tensor(padded_row), atol=1e-6)
    pixel_values = inputs["pixel_values"][0]
    assert torch.equal(pixel_values[10], pixel_values[15])  # the repeated last frame


def test_separate_audio_waveforms_and_files(processor, processor_index_clips, processor_wav_file):
    path = processor_index_clips["25fps"]
    with open_video(path) as source:
        waveform, rate = source.read_audio()
    from_container = processor(videos=path, do_face_crop=False)["audio_values"]
    from_array = processor(videos=path, audio=waveform, sampling_rate=rate, do_face_crop=False)["audio_values"]
    np.testing.assert_allclose(from_array, from_container, atol=1e-6)
    stereo_44k = processor(videos=[path, path], audio=[processor_wav_file, None], do_face_crop=False)
    assert stereo_44k["audio_values"].shape == (2, 1, 256, 128)
    np.testing.assert_allclose(stereo_44k["audio_values"][1], from_container[0], atol=1e-6)
    with pytest.raises(ValueError, match="one per video"):
        processor(videos=[path, path], audio=[waveform])


def test_batches_mixed_inputs(processor, processor_face_clip, processor_frame_folder, processor_index_clips):
    frames = synthetic.index_frames(30)
    audio = synthetic.speech_like_audio(1.2)
    inputs = processor(
        videos=[processor_face_clip[0], processor_frame_folder, frames],
        audio=[None, audio, audio],
        sampling_rate=16000,
        return_tensors="pt",
    )
    assert inputs["pixel_values"].shape == (3, 16, 3, 160, 160)
    assert inputs["audio_values"].shape == (3, 1, 256, 128)
    assert inputs["face_found"].tolist() == [True, True, True]  # only the video file was face-cropped


def test_no_audio_stream_is_an_error_by_default(processor, processor_no_audio_clip, caplog):
    with pytest.raises(MissingAudioError, match="item 0.*no audio stream"):
        processor(videos=processor_no_audio_clip, do_face_crop=False)
    with caplog.at_level("WARNING"):
        inputs = AVFMAEProcessor(missing_audio="silence")(videos=processor_no_audio_clip, do_face_crop=False)
    assert "silence" in caplog.text and "item 0" in caplog.text
    silent = inputs["audio_values"][0, 0]
    # 1.6 s of silence: 158 frames at log(epsilon), then padding.
    assert np.allclose(silent[:158], silent[0, 0]) and silent[0, 0] < -1
    # a setting of the processor, not of the call (transformers' rule for __init__ arguments)
    with pytest.raises(TypeError, match="missing_audio"):
        processor(videos=processor_no_audio_clip, missing_audio="silence")


def test_audio_shorter_than_one_fbank_window(processor, processor_index_clips):
    with pytest.raises(AudioTooShortError, match="item 0.*400 samples"):
        processor(videos=processor_index_clips["short"], audio=np.zeros(300, np.float32), sampling_rate=16000)


def test_mixed_batch_names_the_bad_item(processor, processor_index_clips, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    good = processor_index_clips["short"]
    with pytest.raises(CorruptVideoError) as raised:
        processor(videos=[good, good, str(bad), good], do_face_crop=False)
    assert raised.value.index == 2 and str(raised.value).startswith(f"item 2 ({str(bad)!r})")
    with pytest.raises(InputNotFoundError, match="item 1"):
        processor(videos=[good, str(tmp_path / "missing.mp4")], do_face_crop=False)


def test_official_random_gain_in_the_processor(processor, processor_index_clips):
    path = processor_index_clips["25fps"]
    plain = processor(videos=path, do_face_crop=False)["audio_values"]
    np.testing.assert_array_equal(plain, processor(videos=path, do_face_crop=False)["audio_values"])
    gained = processor(videos=path, do_face_crop=False, audio_gains=1.25)["audio_values"]
    # A gain g shifts the log-mel values of the signal by 2 ln(g) before normalisation (bins that hold no mel
    # filter stay at the log floor).
    shift = 2 * np.log(1.25) / (2 * processor.feature_extractor.std)
    difference = gained[0, 0, :200] - plain[0, 0, :200]
    assert np.mean(np.abs(difference - shift) < 2e-3) > 0.95 and np.abs(np.median(difference) - shift) < 1e-4
    # Train mode with a seed: the window is drawn first, then the gain, as in the official loader.
    jittered = processor(videos=path, sampling_mode="train", audio_gain_jitter=True, generator=4, do_face_crop=False)
    stream = np.random.RandomState(4)
    stream.randint(64, 100)
    expected = processor(
        videos=path, sampling_mode="train", generator=4, audio_gains=draw_audio_gain(stream), do_face_crop=False
    )
    np.testing.assert_array_equal(jittered["audio_values"], expected["audio_values"])


def test_typed_processor_kwargs(processor, processor_index_clips):
    """transformers' processor-kwargs layout: grouped per modality or flat, the same result; unknown names raise."""
    path = processor_index_clips["25fps"]
    flat = processor(
        videos=path, sampling_mode="test", test_segment=1, size={"height": 32, "width": 32}, audio_gains=0.8
    )
    grouped = processor(
        videos=path,
        videos_kwargs={"sampling_mode": "test", "test_segment": 1, "size": {"height": 32, "width": 32}},
        audio_kwargs={"audio_gains": 0.8},
    )
    assert flat["pixel_values"].shape == (1, 16, 3, 32, 32)
    for key in ("pixel_values", "audio_values"):
        np.testing.assert_array_equal(flat[key], grouped[key])
    common = processor(videos=path, common_kwargs={"return_tensors": "pt"}, do_face_crop=False)
    assert isinstance(common["pixel_values"], torch.Tensor)
    assert processor.missing_audio == "error" and processor.video_processor.sampling_mode == "center"  # unchanged
    for kwargs in (
        {"sampling_mod": "test"},
        {"videos_kwargs": {"window_hops": 3}},
        {"text_kwargs": {"padding": True}},
    ):
        with pytest.raises(TypeError, match="unknown arguments"):
            processor(videos=path, **kwargs)
    with pytest.raises(ValueError, match="two times"):
        processor(videos=path, sampling_mode="test", videos_kwargs={"sampling_mode": "train"})
    with pytest.raises(ValueError, match="cannot honour"):
        processor(videos=path, max_length=100)


def test_audio_only_call(processor):
    audio_values = processor(audio=[synthetic.speech_like_audio(2.0)], sampling_rate=16000)["audio_values"]
    assert audio_values.shape == (1, 1, 256, 128)
    with pytest.raises(ValueError, match="videos"):
        processor()


def test_save_load_and_auto_processor(tmp_path, processor_index_clips):
    from transformers import AutoProcessor, AutoVideoProcessor

    processor = AVFMAEProcessor(
        AVFMAEVideoProcessor(num_frames=8, do_face_crop=False),
        AVFMAEFeatureExtractor(max_length=128),
        missing_audio="silence",
    )
    processor.save_pretrained(tmp_path)
    AVFMAEConfig().save_pretrained(tmp_path)
    # transformers 5 keeps the parts in processor_config.json, where AutoVideoProcessor finds the video processor.
    assert AutoVideoProcessor.from_pretrained(tmp_path).to_dict() == processor.video_processor.to_dict()
    for loaded in (AVFMAEProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, AVFMAEProcessor) and isinstance(loaded.video_processor, AVFMAEVideoProcessor)
        assert loaded.video_processor.to_dict() == processor.video_processor.to_dict()
        assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
        assert loaded.missing_audio == "silence"
        inputs = loaded(videos=processor_index_clips["short"], return_tensors="pt")
        assert inputs["pixel_values"].shape == (1, 8, 3, 160, 160) and inputs["audio_values"].shape == (1, 1, 128, 128)


def test_data_loader_workers(processor_index_clips, processor_face_clip):
    """Worker processes (fork) run the processor, also after the parent used the face detector."""
    processor = AVFMAEProcessor()
    processor(videos=processor_face_clip[0])

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            inputs = processor(videos=processor_index_clips["short"], do_face_crop=index % 2 == 0, return_tensors="pt")
            # Outputs made in a worker live in shared memory: sending them to the main process copies nothing.
            return {**inputs, "shared": torch.tensor(inputs["pixel_values"].is_shared())}

    loader = torch.utils.data.DataLoader(Clips(), batch_size=None, num_workers=2, timeout=120)
    batches = list(loader)
    assert len(batches) == 4 and all(batch["pixel_values"].shape == (1, 16, 3, 160, 160) for batch in batches)
    assert all(batch["shared"] for batch in batches)
    assert not processor(videos=processor_index_clips["short"], return_tensors="pt")["pixel_values"].is_shared()


def test_unaligned_audio_and_audio_file_errors(processor, processor_index_clips, tmp_path):
    path = processor_index_clips["25fps"]
    aligned = processor(videos=path, sampling_mode="test", test_segment=1, do_face_crop=False)["audio_values"]
    whole = AVFMAEProcessor(align_audio=False)(videos=path, sampling_mode="test", test_segment=1, do_face_crop=False)
    expected = expected_audio_values(processor.feature_extractor, path, (0, 99), 100)
    np.testing.assert_allclose(whole["audio_values"][0], expected.numpy(), atol=1e-6)
    assert not np.allclose(whole["audio_values"], aligned)
    assert AVFMAEProcessor(align_audio=False).align_audio is False
    broken_audio = tmp_path / "broken.wav"
    broken_audio.write_bytes(b"RIFF" + b"\x00" * 100)
    with pytest.raises(ValueError, match=f"item 0 \\({str(broken_audio)!r}\\)"):
        processor(videos=path, audio=str(broken_audio), do_face_crop=False)


class AVFMAEProcessorTest(import_common("test_processing_common").ProcessorTesterMixin, unittest.TestCase):
    """transformers' processor tests with a small processor (8 frames of 32x32, a 64-row spectrogram).

    All that apply pass. The mixin skips by itself what cannot apply: tests of text, tokenizers, chat templates,
    images and multimodal tokens (AVF-MAE++ takes none), and those that load its remote sample media (offline; they
    also need torchcodec and librosa)."""

    processor_class = AVFMAEProcessor
    videos_input_name = "pixel_values"
    audio_input_name = "audio_values"

    @classmethod
    def _setup_video_processor(cls):
        return AVFMAEVideoProcessor(num_frames=8, size={"height": 32, "width": 32})

    @classmethod
    def _setup_feature_extractor(cls):
        return AVFMAEFeatureExtractor(max_length=64)


def test_audio_that_cannot_follow_the_frames_is_warned_about_once_per_video(tmp_path, caplog):
    """Audio is matched to frames by relative position and windows are counted in frames (the official rules); where
    that gives a window other sound than its frames', a warning says so, once per video, not once per window."""

    def clip(name, seconds, fps, audio_seconds):
        frames = synthetic.index_frames(int(round(seconds * fps)))
        audio = synthetic.speech_like_audio(audio_seconds)
        return synthetic.write_video(tmp_path / f"{name}.mp4", frames, fps=fps, audio=audio)

    logging.Logger.warning_once.cache_clear()  # the notice about fast videos is given once per process
    processor = AVFMAEProcessor()
    cases = {
        "matched": (clip("matched", 6, 25, 6), []),
        "short_audio": (clip("short_audio", 6, 25, 3), ["the audio lasts 3.0", "and the video 6.00 s"]),
        "slow": (clip("slow", 6, 12.5, 6), ["spectrogram of 256 fbank frames holds 2.5", "not heard"]),
        "fast": (clip("fast", 6, 60, 6), ["At 60 fps a window's frames span 1.0", "partly padding"]),
    }
    for name, (path, expected) in cases.items():
        caplog.clear()
        with caplog.at_level("WARNING"):
            processor(videos=path, sampling_mode="sliding", do_face_crop=False)
        warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
        assert len(warnings) == (1 if expected else 0), (name, warnings)
        assert all(part in warnings[0] for part in expected), (name, warnings)
