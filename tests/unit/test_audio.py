"""Audio in: libsndfile formats, downmix, named resampler, validation messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

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


def _whole_file_reference(path: Path, rate_out: int) -> np.ndarray:
    """The pre-streaming path, written out independently: whole-file decode, float64 channel mean, one-shot
    soxr HQ resample."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.astype(np.float64).mean(axis=1).astype(np.float32)
    return mono if rate == rate_out else soxr.resample(mono, rate, rate_out, quality="HQ").astype(np.float32)


@pytest.mark.parametrize(("rate", "channels", "rate_out", "fmt", "subtype"), [
    (48000, 8, 16000, "FLAC", "PCM_24"), (44100, 2, 16000, "WAV", "PCM_16"), (22050, 3, 32000, "WAV", "FLOAT"),
    (16000, 1, 16000, "WAV", "PCM_16"), (8000, 2, 16000, "OGG", "VORBIS"), (44100, 2, 32000, "MP3", "MPEG_LAYER_III"),
])
@pytest.mark.parametrize("block_frames", [None, 1000, 4096])
def test_streamed_load_equals_whole_file_decode_bit_for_bit(tmp_path: Path, rate, channels, rate_out, fmt, subtype,
                                                            block_frames) -> None:
    """soxr's ResampleStream runs the same engine as its one-shot resample: measured identical to the last bit
    for every rate pair and block size tried (48k/44.1k/22.05k/8k/192k in, 16k/32k out, blocks 4096-262144),
    so the tolerance is zero, not a loosened one."""
    rng = np.random.default_rng(rate + channels)
    samples = (0.2 * rng.standard_normal((rate * 3 + 17, channels))).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, samples, rate, format=fmt, subtype=subtype)
    expected = _whole_file_reference(path, rate_out)
    got = audio.load_mono(path, rate_out, block_frames=block_frames)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_block_size_bounds_memory_whatever_the_channel_count() -> None:
    assert audio._block_frames(1) * 1 <= audio.BLOCK_SAMPLES
    assert audio._block_frames(8) * 8 <= audio.BLOCK_SAMPLES
    assert audio._block_frames(4096) == audio.MIN_BLOCK_FRAMES  # many channels: a small block still
    assert audio.BLOCK_SAMPLES * 4 <= 4 << 20


def test_nan_in_a_late_block_is_found_when_streaming(tmp_path: Path) -> None:
    wave = _tone(16000, seconds=3.0)
    wave[-10] = np.nan
    sf.write(tmp_path / "late.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(audio.AudioError, match=r"late\.wav: contains NaN or infinite"):
        audio.load_mono(tmp_path / "late.wav", 16000, "late.wav", block_frames=1024)
    with pytest.raises(audio.AudioError, match="NaN or infinite"):
        audio.scan_peak(tmp_path / "late.wav", "late.wav", block=1024)


def test_streamed_load_of_a_long_multichannel_file_holds_one_block(tmp_path: Path) -> None:
    """tracemalloc counts numpy buffers: decoding 60 s x 8 ch x 48 kHz (92 MB as float32) peaks at the output
    (3.8 MB at 16 kHz) plus a few blocks (measured 18 MB in all), not the decoded file."""
    import tracemalloc

    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", 48000, 8, format="FLAC", subtype="PCM_16") as fh:
        block = (0.01 * np.sin(np.arange(48000) / 10)).astype(np.float32)[:, None].repeat(8, axis=1)
        for _ in range(60):
            fh.write(block)
    tracemalloc.start()
    try:
        wave = audio.load_mono(path, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(wave) == 60 * 16000
    decoded_bytes = 60 * 48000 * 8 * 4
    assert peak < wave.nbytes + 4 * audio.BLOCK_SAMPLES * 8 < decoded_bytes, (peak, decoded_bytes)


def test_load_channels_keeps_every_channel_resampled_as_one_shot_soxr(tmp_path) -> None:
    """What a model that reads channels gets (the stable-audio OpenL3 variants): each channel resampled exactly
    as soxr's one-shot call on the whole file, a mono file as L = R."""
    rng = np.random.default_rng(3)
    three = rng.uniform(-0.5, 0.5, (44100 * 2 + 17, 3)).astype(np.float32)
    sf.write(tmp_path / "three.wav", three, 44100, subtype="FLOAT")
    got = audio.load_channels(tmp_path / "three.wav", 48000, 2, block_frames=5000)
    np.testing.assert_array_equal(got, soxr.resample(three, 44100, 48000, quality=audio.SOXR_QUALITY))
    sf.write(tmp_path / "mono.wav", three[:, 0], 48000, subtype="FLOAT")
    mono = audio.load_channels(tmp_path / "mono.wav", 48000, 2)
    assert mono.shape == (len(three), 2)
    np.testing.assert_array_equal(mono[:, 0], three[:, 0])
    np.testing.assert_array_equal(mono[:, 1], three[:, 0])
    np.testing.assert_array_equal(audio.load_channels(tmp_path / "mono.wav", 48000, 1), three[:, 0])
