# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Regenerate `avfmae_hf/data/sample_talking_face.mp4`, the small clip of the package's offline demo.

Picture: the public-domain NASA portrait of astronaut Eileen Collins (`skimage.data.astronaut()`, shipped in the
scikit-image wheel), pasted at about 130 px over a face-free photo (`skimage.data.coffee()`) and moved a few pixels
and degrees per frame: 3 s, 25 fps, 480x270, H.264.

Sound: a sentence spoken by the espeak-ng speech synthesiser (GPL-3 program; its output is not covered by the
program's licence), resampled to 16 kHz mono, AAC. Without espeak-ng (`apt-get install espeak-ng`), a synthetic
voice-like signal is used instead (a harmonic series with a syllable-rate envelope, `synthetic.speech_like_audio`);
the script says which one it used.

Usage (from the project root): python tests/media/make_sample_clip.py [--output PATH]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402

from tests.media import synthetic  # noqa: E402


SENTENCE = "Hello! I am so happy to see you today. This is a short test of the audio visual autoencoder."
DURATION = 3.0
FPS = 25
SAMPLING_RATE = 16000


def espeak_speech(text: str, duration: float) -> np.ndarray | None:
    """Speech from espeak-ng at 16 kHz, cut or zero-padded to `duration` seconds; `None` without espeak-ng."""
    if shutil.which("espeak-ng") is None:
        return None
    from avfmae_hf.video_decoding_avfmae import load_audio_file

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "speech.wav")
        subprocess.run(["espeak-ng", "-s", "190", "-w", path, text], check=True)
        waveform, rate = load_audio_file(path)
    mono = torchaudio.functional.resample(torch.from_numpy(waveform.mean(axis=0)), rate, SAMPLING_RATE).numpy()
    samples = int(duration * SAMPLING_RATE)
    mono = np.pad(mono, (0, max(samples - len(mono), 0)))[:samples]
    fade = np.minimum(1.0, np.arange(samples)[::-1] / (0.05 * SAMPLING_RATE))  # no click at the cut
    return (0.9 * mono / max(np.abs(mono).max(), 1e-6) * fade).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join(ROOT, "avfmae_hf", "data", "sample_talking_face.mp4"))
    args = parser.parse_args()

    frames, _ = synthetic.talking_face_frames(num_frames=int(DURATION * FPS), height=270, width=480, face_size=130)
    audio = espeak_speech(SENTENCE, DURATION)
    source = "espeak-ng speech"
    if audio is None:
        audio, source = synthetic.speech_like_audio(DURATION, SAMPLING_RATE), "synthetic voice-like signal"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    synthetic.write_video(args.output, frames, FPS, audio, SAMPLING_RATE, crf=26)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1024:.0f} KB, audio: {source})")


if __name__ == "__main__":
    main()
