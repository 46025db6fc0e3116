"""Audio in: libsndfile formats, downmix, named resampler, validation messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundcheck import audio


def _tone(rate: int, seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("fmt", "subtype", "ext"), [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_24", "flac"),
                                                     ("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"),
                                                     ("MP3", "MPEG_LAYER_III", "mp3")])
def test_decodes_common_formats_without_relying_on_the_extension(tmp_path: Path, fmt, subtype, ext) -> None:
    rate = 48000 if subtype == "OPUS" else 16000
    path = tmp_path / f"x.{ext}"
    sf.write(path, _tone(rate), rate, format=fmt, subtype=subtype)
    blob = tmp_path / "blob"  # the store keeps no extension
    blob.write_bytes(path.read_bytes())
    wave = audio.load_mono(blob, 16000)
    assert abs(len(wave) - 16000) < 2000  # codecs pad a little
    spectrum = np.abs(np.fft.rfft(wave[:16000] * np.hanning(min(16000, len(wave)))))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2


def test_downmix_is_the_channel_mean() -> None:
    stereo = np.stack([np.ones(10, np.float32), np.zeros(10, np.float32)], axis=1)
    assert np.allclose(audio.to_mono(stereo), 0.5)


def test_resampling_keeps_a_tone_and_names_the_resampler() -> None:
    wave = audio.resample(_tone(44100), 44100, 16000)
    assert len(wave) == 16000
    assert abs(np.argmax(np.abs(np.fft.rfft(wave))) - 440) <= 1
    assert audio.RESAMPLER.startswith("soxr-") and audio.RESAMPLER.endswith("-HQ")


def test_nan_and_empty_and_garbage_are_audio_errors(tmp_path: Path) -> None:
    bad = _tone(16000)
    bad[5] = np.inf
    sf.write(tmp_path / "inf.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(audio.AudioError, match="NaN or infinite"):
        audio.scan_peak(tmp_path / "inf.wav", "inf.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(audio.AudioError, match="empty"):
        audio.probe(tmp_path / "empty.wav", "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"junk" * 100)
    with pytest.raises(audio.AudioError, match=r"junk\.wav: not a readable audio file \(Format not recognised"):
        audio.probe(tmp_path / "junk.wav", "junk.wav")
