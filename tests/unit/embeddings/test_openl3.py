"""OpenL3: our network, front end and loader against torchopenl3 1.0.1 on the same random-weight checkpoints.

torchopenl3 downloads its weights only in ``load_audio_embedding_model``; ``PytorchOpenl3(...)`` builds the whole
network offline (front end included: its Conv1d DFT kernels and the librosa mel matrix), so the reference
here is the package's own ``get_audio_embedding`` on a model built with random weights, saved under the official
file name and loaded by us through ``registry.load``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

torchopenl3 = pytest.importorskip("torchopenl3", reason="reference package: pip install --no-deps torchopenl3==1.0.1 "
                                  "(scripts/test.sh does; its resampy<0.3 pin conflicts with the test extra)")
from torchopenl3.models import PytorchOpenl3  # noqa: E402
from torchopenl3.utils import preprocess_audio_batch  # noqa: E402

from soundcheck.embeddings import registry  # noqa: E402
from soundcheck.embeddings.openl3 import OpenL3Network, log_mel_windows, window_rows  # noqa: E402

from .conftest import he_init_, noise, tone, trust  # noqa: E402
from .test_batching import assert_batch_size_independent  # noqa: E402

SR48 = 48000
MUSIC_512, MUSIC_6144, STABLE = "openl3-mel256-music-512", "openl3-mel256-music-6144", \
    "openl3-mel256-music-512-stable-audio"


def reference_network(size: int, seed: int) -> torch.nn.Module:
    """torchopenl3's network with random weights; the input batch norm gets dB-scale statistics, as trained."""
    net = PytorchOpenl3(content_type="music", input_repr="mel256", embedding_size=size)
    he_init_(net, seed=seed)
    with torch.no_grad():
        net.batch_normalization_1.running_mean.fill_(-40.0)
        net.batch_normalization_1.running_var.fill_(400.0)
    return net.eval()


@pytest.fixture(scope="module")
def openl3_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[int, torch.nn.Module], Path]:
    model_dir = tmp_path_factory.mktemp("openl3_models")
    nets = {}
    for size, seed in ((512, 5), (6144, 6)):
        nets[size] = reference_network(size, seed)
        torch.save(nets[size].state_dict(), model_dir / registry.openl3_weights("music", size).name)
    return nets, model_dir


@pytest.fixture(scope="module")
def openl3_loaded(openl3_reference) -> dict:
    _, model_dir = openl3_reference
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, (MUSIC_512, MUSIC_6144, STABLE), patch)
        return {m: registry.load(m, model_dir) for m in (MUSIC_512, MUSIC_6144, STABLE)}


def music(seconds: float, seed: int, channels: int = 1) -> np.ndarray:
    """Noise plus a tone (broadband: every mel band well above float32 rounding of the reference's STFT)."""
    cols = [noise(seconds, sr=SR48, amp=0.2, seed=seed + c) + tone(330.0 * (c + 1), seconds, sr=SR48, amp=0.3)
            for c in range(channels)]
    return cols[0] if channels == 1 else np.stack(cols, axis=1)


def reference_embeddings(net: torch.nn.Module, wave: np.ndarray, hop_s: float = 0.1) -> np.ndarray:
    emb, _ = torchopenl3.get_audio_embedding(wave, SR48, model=net, hop_size=hop_s, center=True, verbose=False)
    return emb[0].cpu().numpy()


def test_state_dict_layout_equals_torchopenl3() -> None:
    for size in (512, 6144):
        ref = {k: tuple(v.shape) for k, v in PytorchOpenl3("music", "mel256", size).state_dict().items()}
        ours = {k: tuple(v.shape) for k, v in OpenL3Network(size).state_dict().items()}
        assert len(ref) == 59  # 8 batch norms x 5, 8 convs x 2, 3 front-end buffers
        speclayer = {k for k in ref if k.startswith("speclayer.")}
        assert speclayer == {"speclayer.dft_real_kernels", "speclayer.dft_imag_kernels", "speclayer.mel_basis"}
        assert ours == {k: v for k, v in ref.items() if k not in speclayer}


@pytest.mark.parametrize("samples", [0, 1, 1000, 24000, 24001, 28800, 48000, 52801, 100000])
@pytest.mark.parametrize("hop_s", [0.1, 0.5])
def test_windows_equal_torchopenl3_framing(samples: int, hop_s: float) -> None:
    wave = noise(samples / SR48 + 1e-9, sr=SR48, seed=samples)[:samples]
    ref = preprocess_audio_batch(torch.as_tensor(wave, dtype=torch.float64)[None], SR48, center=True,
                                 hop_size=hop_s).to(torch.float32)[:, 0].numpy()
    ours = window_rows(wave, int(hop_s * SR48))
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref)


def test_log_mel_front_end_matches_torchopenl3_speclayer(openl3_reference, openl3_loaded) -> None:
    """Ours (float64 FFT) against the reference's own speclayer run in float64, and in float32 as shipped.

    The float32 reference rounds its 2048-term DFT sums: it differs from itself in float64 by up to ~1e-3 dB on
    weak bins. Ours must match the float64 reference to 1e-4 dB and the float32 one within that self-difference.
    """
    nets, _ = openl3_reference
    windows = torch.from_numpy(np.ascontiguousarray(window_rows(music(1.3, seed=2), 4800)))
    with torch.no_grad():
        ref32 = nets[512].speclayer(windows[:, None]).squeeze(-1).numpy()
        ref64 = copy.deepcopy(nets[512].speclayer).double()(windows.double()[:, None]).squeeze(-1).numpy()
    ours = log_mel_windows(windows, openl3_loaded[MUSIC_512].mel_basis)
    assert ours.shape == (len(windows), 1, 256, 199) and ref32.shape == (len(windows), 256, 199)
    assert ref32.min() >= -80.0 and ref32.max() == 0.0 and ref32.std() > 5.0
    ours = ours[:, 0].numpy()
    assert np.abs(ours - ref64).max() <= 1e-4
    assert np.abs(ours - ref32).max() <= np.abs(ref32 - ref64).max() + 1e-4


@pytest.mark.parametrize(("model_id", "size", "seconds"), [(MUSIC_512, 512, 0.3), (MUSIC_512, 512, 0.62),
                                                           (MUSIC_6144, 6144, 0.62)])
def test_embeddings_match_torchopenl3(openl3_reference, openl3_loaded, model_id, size, seconds) -> None:
    nets, _ = openl3_reference
    wave = music(seconds, seed=int(seconds * 100))
    ref = reference_embeddings(nets[size], wave)
    ours = openl3_loaded[model_id].embed([wave])[0].frames
    assert ours.shape == ref.shape == (1 if seconds <= 0.5 else 1 + int(np.ceil((seconds - 0.5) / 0.1 - 1e-9)), size)
    assert np.abs(ref).max() > 1.0  # weights big enough for the comparison to mean something
    assert np.abs(ours - ref).max() <= 1e-4


def test_stereo_average_is_the_channel_mean_as_torchopenl3(openl3_reference, openl3_loaded) -> None:
    nets, _ = openl3_reference
    stereo = music(0.4, seed=7, channels=2)
    ref = reference_embeddings(nets[512], stereo.astype(np.float64))  # torchopenl3 averages [frames, 2]
    assert np.abs(openl3_loaded[MUSIC_512].embed([stereo])[0].frames - ref).max() <= 1e-4


def test_stable_audio_convention_matches_stable_audio_metrics_recipe(openl3_reference, openl3_loaded) -> None:
    """stable-audio-metrics openl3_fd(channels=2, hop 0.5): peak -1 dBFS, L and R embedded apart, [L | R]."""
    nets, _ = openl3_reference
    stereo = music(1.2, seed=9, channels=2)
    normed = stereo.astype(np.float64) * (10 ** (-1.0 / 20) / float(np.abs(stereo).max()))  # pyloudnorm.normalize.peak
    ref = np.concatenate([reference_embeddings(nets[512], normed[:, c].astype(np.float32), hop_s=0.5)
                          for c in (0, 1)], axis=1)
    model = openl3_loaded[STABLE]
    ours = model.embed([stereo])[0].frames
    assert ours.shape == ref.shape == (3, 1024)
    assert np.abs(ours - ref).max() <= 1e-4
    mono = stereo[:, 0]
    ref_mono = reference_embeddings(nets[512], (mono * (10 ** (-1.0 / 20) / float(np.abs(mono).max()))), hop_s=0.5)
    ours_mono = model.embed([mono])[0].frames  # a mono file is "faked" stereo: L = R
    assert np.abs(ours_mono - np.concatenate([ref_mono, ref_mono], axis=1)).max() <= 1e-4


def test_openl3_batches(openl3_loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch sizes 1, 7, 64 over files of 1..6 windows; chunks of 3 so that padded chunks are exercised."""
    model = openl3_loaded[MUSIC_512]
    monkeypatch.setattr(model, "chunk", 3)
    waves = [music(s, seed=i) for i, s in enumerate([0.2, 0.62, 0.05, 0.9, 0.45])]
    assert_batch_size_independent(model, waves)


def test_stable_audio_batches_mixing_mono_and_stereo(openl3_loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    model = openl3_loaded[STABLE]
    monkeypatch.setattr(model, "chunk", 3)
    assert_batch_size_independent(model, [music(0.7, 1, channels=2), music(0.3, 2), music(1.1, 3, channels=2)])


def test_provenance_names_channels_weights_and_hop(openl3_loaded) -> None:
    mono, stable = openl3_loaded[MUSIC_512].provenance(), openl3_loaded[STABLE].provenance()
    assert mono["frontend"]["channels"] == "mono" and stable["frontend"]["channels"] == "stable-audio"
    assert "stable-audio-metrics" in stable["frontend"]["channels_rule"]
    assert (openl3_loaded[MUSIC_512].input_channels, openl3_loaded[STABLE].input_channels) == (1, 2)
    assert (mono["hop_s"], stable["hop_s"], mono["dim"], stable["dim"]) == (0.1, 0.5, 512, 1024)
    assert [w["name"] for w in stable["weights"]] == ["torchopenl3_mel256_music_512.pth.tar"]
    assert len(stable["weights"][0]["sha256"]) == 64


def test_missing_weights_say_which_file_goes_where(tmp_path: Path) -> None:
    for model_id, name in ((MUSIC_6144, "torchopenl3_mel256_music_6144.pth.tar"),
                           ("openl3-mel256-env-512-stable-audio", "torchopenl3_mel256_env_512.pth.tar")):
        status = registry.availability(model_id, tmp_path)
        assert not status.available
        assert str(tmp_path / name) in status.reason and f"models pull {model_id}" in status.reason


@pytest.mark.parametrize("damage", ["no_mel", "wrong_dft"])
def test_checkpoint_with_another_front_end_is_refused(openl3_reference, tmp_path, monkeypatch, damage) -> None:
    nets, _ = openl3_reference
    state = dict(nets[512].state_dict())
    if damage == "no_mel":
        del state["speclayer.mel_basis"]
    else:
        state["speclayer.dft_real_kernels"] = state["speclayer.dft_real_kernels"] * 1.01
    torch.save(state, tmp_path / registry.openl3_weights("music", 512).name)
    trust(tmp_path, (MUSIC_512,), monkeypatch)
    with pytest.raises(ValueError, match="mel_basis" if damage == "no_mel" else "periodic-Hann DFT"):
        registry.load(MUSIC_512, tmp_path)


def test_registry_lists_openl3_without_importing_torch(tmp_path: Path) -> None:
    code = ("import sys; from soundcheck.embeddings import registry; "
            f"s = registry.availability({MUSIC_512!r}, {str(tmp_path)!r}); "
            "assert not s.available; assert 'torch' not in sys.modules; "
            "assert 'soundcheck.embeddings.openl3' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("model_id", [MUSIC_512, STABLE])
@pytest.mark.parametrize("channels", [1, 2])
def test_front_end_of_a_long_file_is_a_view_not_ten_copies(openl3_loaded, model_id: str, channels: int) -> None:
    """10 windows per second of audio, each 1 s long: rows are strided views of one padded copy of the file."""
    wave = np.zeros((60 * SR48, channels) if channels == 2 else 60 * SR48, dtype=np.float32)
    model = openl3_loaded[model_id]
    rows = model.frontend(wave)
    n = 1 + int(np.ceil((60.5 - 1.0) / model.spec.hop_s - 1e-9))  # 0.5 s lead, whole hops: 596 or 120
    assert rows.shape == (n, model.input_channels, SR48)
    low, high = np.lib.array_utils.byte_bounds(rows)
    assert high - low <= 4 * 2 * (60 * SR48 + 2 * SR48)  # at most one padded copy per channel


def test_waveforms_of_other_shapes_are_refused(openl3_loaded) -> None:
    with pytest.raises(ValueError, match=r"\[frames, channels\]"):
        openl3_loaded[MUSIC_512].frontend(np.zeros((2, 3, 4), dtype=np.float32))


def textbook_kad(ref: np.ndarray, cand: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD^2 with a Gaussian kernel (diagonals excluded), x100 as kadtk: the formula, in float64."""
    def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.exp(-np.maximum(sq, 0.0) / (2.0 * bandwidth**2))

    kxx, kyy, kxy = gram(ref, ref), gram(cand, cand), gram(ref, cand)
    m, n = len(ref), len(cand)
    return 100.0 * ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                    - 2.0 * kxy.mean())


@pytest.mark.slow
def test_kad_job_on_openl3_through_a_real_worker(openl3_reference, tmp_path_factory) -> None:
    """The normal path end to end: weights in the model dir by their official name, preloaded by a real worker,
    a KAD job over HTTP; the value equals the textbook formula on our model's embeddings of the same files.
    (KAD, not FD: ~15 frames of 512-d give singular covariances, where sqrtm amplifies 1e-7 into 1e-4.)"""
    import soundfile as sf

    from soundcheck import audio
    from soundcheck.client import Client
    from soundcheck.serve import Service
    from tests.conftest import free_port, make_settings

    nets, _ = openl3_reference
    root = tmp_path_factory.mktemp("openl3_service")
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", root, preload=["mel", MUSIC_512])
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    torch.save(nets[512].state_dict(), settings.models_dir / registry.openl3_weights("music", 512).name)
    sets = []
    for name, base in (("ref", 0), ("cand", 10)):
        folder = root / name
        folder.mkdir()
        for i in range(3):  # 44.1 kHz stereo files: the loader downmixes and resamples to 48 kHz
            sf.write(folder / f"{i}.wav", music(0.7 + 0.1 * i, seed=base + i, channels=2), 44100)
        sets.append(folder)
    model = registry.load(MUSIC_512, settings.models_dir)
    frames = [np.concatenate([model.embed([audio.load_mono(p, SR48)])[0].frames for p in sorted(d.glob("*.wav"))])
              .astype(np.float64) for d in sets]
    svc = Service(settings)
    try:
        svc.start(n_workers=1, quiet=True)
        with Client(svc.url) as client:
            ref, cand = client.upload(sets[0]), client.upload(sets[1])
            done = client.wait(client.submit(ref.id, cand.id, MUSIC_512, ["kad"]).id, poll_s=0.2, timeout_s=240)
    finally:
        svc.stop()
    assert done.status == "finished", done.error
    kad = done.result["metrics"]["kad"]
    distances = np.sqrt(((frames[0][:, None] - frames[0][None]) ** 2).sum(-1))[np.triu_indices(len(frames[0]), 1)]
    assert kad["bandwidth"] == pytest.approx(np.median(distances), rel=1e-6), kad
    assert kad["value"] == pytest.approx(textbook_kad(frames[0], frames[1], kad["bandwidth"]), rel=1e-5, abs=1e-6)
    prov = done.result["provenance"]["embedding"]
    assert prov["model"] == MUSIC_512 and prov["frontend"]["channels"] == "mono"
    assert prov["weights"][0]["name"] == "torchopenl3_mel256_music_512.pth.tar"


def test_silence_matches_torchopenl3(openl3_reference, openl3_loaded) -> None:
    """All-zero input: every band at the 1e-10 floor, so the dB patch is 0 after the max is subtracted."""
    nets, _ = openl3_reference
    silence = np.zeros(int(0.3 * SR48), dtype=np.float32)
    ref = reference_embeddings(nets[512], silence)
    assert np.abs(openl3_loaded[MUSIC_512].embed([silence])[0].frames - ref).max() <= 1e-4


def test_stable_audio_uses_channels_0_and_1_of_a_multichannel_file(openl3_loaded) -> None:
    """As stable-audio-metrics: peak-normalised over all channels (pyloudnorm), then audio[:, 0] and audio[:, 1]."""
    three = music(0.3, seed=4, channels=3)
    gain = 10 ** (-1.0 / 20) / float(np.abs(three).max())
    expected = np.stack([window_rows((three[:, c].astype(np.float64) * gain).astype(np.float32), 24000)
                         for c in (0, 1)], axis=1)
    np.testing.assert_array_equal(openl3_loaded[STABLE].frontend(three), expected)


def test_the_pipeline_gives_the_stable_audio_variant_both_channels(openl3_loaded, tmp_path: Path) -> None:
    """Through the path every job takes (decode → model): a stereo file reaches the [L | R] variant as stereo,
    not downmixed, so its halves are the two channels' embeddings; the mono variant still gets the downmix."""
    import soundfile as sf

    from soundcheck.datastore import BlobStore
    from soundcheck.embeddings.base import sha256_file
    from soundcheck.jobspec import FileEntry
    from soundcheck.pipeline import embed_files

    stereo = music(1.5, seed=9, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, SR48, subtype="FLOAT")
    entry = FileEntry(name="stereo.wav", sha256=sha256_file(path), bytes=path.stat().st_size, duration_s=1.5,
                      sample_rate=SR48, channels=2, format="WAV", path=str(path))
    blobs = BlobStore(tmp_path / "blobs")
    got = embed_files([entry], openl3_loaded[STABLE], blobs, None)[0].frames
    np.testing.assert_array_equal(got, openl3_loaded[STABLE].embed([stereo])[0].frames)
    half = got.shape[1] // 2
    assert np.abs(got[:, :half] - got[:, half:]).max() > 1e-3  # L and R differ: not [M | M]
    mono = embed_files([entry], openl3_loaded[MUSIC_512], blobs, None)[0].frames
    np.testing.assert_array_equal(mono, openl3_loaded[MUSIC_512].embed([stereo.mean(axis=1)])[0].frames)
