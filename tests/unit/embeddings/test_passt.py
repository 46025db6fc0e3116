"""PaSST: our network, front end and framings against hear21passt 0.0.26 on the same random-weight checkpoint.

hear21passt downloads weights only when ``get_model(pretrained=True)`` (its default, and what ``get_basic_model``
uses); ``get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)`` builds the network offline, and
``AugmentMelSTFT`` + ``PasstBasicWrapper`` the front end and the HEAR API around it. The net's state dict is
saved under the official file name and loaded by us through ``registry.load``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from soundcheck.embeddings import registry
from tests.unit.embeddings.conftest import he_init_, noise, tone, trust
from tests.unit.embeddings.test_batching import assert_batch_size_independent

hear21passt_passt = pytest.importorskip("hear21passt.models.passt")
from hear21passt.models.preprocess import AugmentMelSTFT  # noqa: E402
from hear21passt.wrapper import PasstBasicWrapper  # noqa: E402

SR32 = 32000
IDS = ("passt", "passt-stable-audio", "passt-audiocraft")


@contextlib.contextmanager
def quiet():
    """hear21passt prints its model and shapes, and torch warns about its old stft call."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reference_model(seed: int, mode: str = "all") -> PasstBasicWrapper:
    """hear21passt's basic model (as ``get_basic_model``) with random weights of O(1) activations."""
    with quiet():
        net = hear21passt_passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
        mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                             htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
    he_init_(net, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if "pos_embed" in name or "token" in name:
                param.normal_(0.0, 0.5, generator=gen)
            elif "norm" in name or name.startswith("head.0"):
                param.uniform_(0.5, 1.5, generator=gen) if name.endswith("weight") else \
                    param.uniform_(-0.2, 0.2, generator=gen)
    return PasstBasicWrapper(mel=mel, net=net, mode=mode).eval()


@pytest.fixture(scope="module")
def passt_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[PasstBasicWrapper, Path]:
    model_dir = tmp_path_factory.mktemp("passt_models")
    ref = reference_model(seed=11)
    torch.save(ref.net.state_dict(), model_dir / registry.PASST_WEIGHTS.name)
    return ref, model_dir


@pytest.fixture(scope="module")
def passt_loaded(passt_reference) -> dict:
    _, model_dir = passt_reference
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, IDS, patch)
        return {m: registry.load(m, model_dir) for m in IDS}


def sound(seconds: float, seed: int) -> np.ndarray:
    return noise(seconds, sr=SR32, amp=0.2, seed=seed) + tone(440.0 * (seed + 1), seconds, sr=SR32, amp=0.3)


def run_reference(ref: PasstBasicWrapper, wave: np.ndarray) -> np.ndarray:
    with quiet(), torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]).numpy()[0]


def test_state_dict_layout_equals_hear21passt(passt_reference, passt_loaded) -> None:
    ref, _ = passt_reference
    ours = passt_loaded["passt"].network.state_dict()
    theirs = ref.net.state_dict()
    assert len(theirs) == 159
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_front_end_matches_augment_mel_stft_in_eval_mode(passt_reference) -> None:
    from soundcheck.embeddings.passt import kaldi_mel_banks, log_mel

    ref, _ = passt_reference
    wave = torch.from_numpy(sound(3.3, seed=1))[None]
    with quiet(), torch.no_grad():
        theirs = ref.mel(wave)  # float32 only: its Kaldi mel matrix is float32
    ours = log_mel(wave, torch.from_numpy(kaldi_mel_banks()))
    assert ours.shape == theirs.shape == (1, 128, 1 + (len(wave[0]) - 1) // 320)
    assert float((ours - theirs).abs().max()) <= 1e-4


@pytest.mark.parametrize("seconds", [0.4, 3.0, 10.0])
def test_logits_and_embedding_match_hear21passt_on_one_window(passt_reference, passt_loaded, seconds) -> None:
    """Files of at most 10 s are one window, used whole: [527 logits | 768 embedding] is hear21passt's 1295-d
    output (mode "all"); our class outputs are the softmax of those logits."""
    ref, _ = passt_reference
    wave = sound(seconds, seed=2)
    theirs = run_reference(ref, wave)
    model = passt_loaded["passt"]
    rows = model.frontend(wave)
    assert rows.shape[0] == 1
    emb, logits = model.network_outputs(rows)
    assert np.abs(logits[0] - theirs[:527]).max() <= 1e-4
    assert np.abs(emb[0] - theirs[527:]).max() <= 1e-4
    softmax = torch.softmax(torch.from_numpy(theirs[:527]).double(), 0).numpy()
    assert np.abs(model.embed([wave])[0].probs[0] - softmax).max() <= 1e-6
    assert np.abs(theirs).max() > 1.0  # random weights give O(1) outputs: a 1e-4 bound is meaningful


@pytest.mark.slow
def test_long_file_windows_match_hear21passt_scene_embedding(passt_reference, passt_loaded) -> None:
    """> 10 s: hear21passt reflect-pads 5 s and takes 10 s windows every 2.5 s; its scene embedding is their mean."""
    ref, _ = passt_reference
    wave = sound(10.6, seed=3)
    with quiet(), torch.no_grad():
        per_window, _ = ref.get_timestamp_embeddings(torch.from_numpy(wave)[None], window_size=ref.max_model_window,
                                                     hop=ref.scene_hop)
        scene = ref.get_scene_embeddings(torch.from_numpy(wave)[None]).numpy()[0]
    model = passt_loaded["passt"]
    emb, logits = model.network_outputs(model.frontend(wave))
    theirs = per_window.numpy()[0]
    assert emb.shape == (len(wave) // 80000 + 1, 768) == (theirs.shape[0], 768)
    assert np.abs(logits - theirs[:, :527]).max() <= 1e-4
    assert np.abs(emb - theirs[:, 527:]).max() <= 1e-4
    assert np.abs(emb.mean(axis=0) - scene[527:]).max() <= 1e-4


def stable_audio_recipe(ref_logits: PasstBasicWrapper, wave: np.ndarray) -> np.ndarray:
    """stable-audio-metrics ``return_probabilities`` (window 10 s, overlap 5 s, collect mean) re-stated on the
    reference model: peak -1 dBFS, windows, zero-pad > 1.5 s, mean of logits, softmax."""
    # pyloudnorm.normalize.peak(data, -1.0) is data * 10 ** (-1 / 20) / max|data| (pyloudnorm is not installed here)
    audio = wave.astype(np.float64) * 10.0 ** (-1.0 / 20.0) / np.abs(wave).max()
    step, size = 5 * SR32, 10 * SR32
    logits = []
    for i in range(0, max(step, len(audio) - step), step):
        window = audio[i:i + size]
        if len(window) < size and len(window) > int(size * 0.15):
            window = np.pad(window, (0, size - len(window)))
        logits.append(run_reference(ref_logits, window))
    return torch.softmax(torch.from_numpy(np.mean(logits, axis=0)).double(), 0).numpy()


@pytest.mark.slow
def test_stable_audio_windows_and_kl_distribution_match_stable_audio_metrics(passt_reference, passt_loaded) -> None:
    from soundcheck.metrics.classifier import distribution_from_window_softmax

    ref, _ = passt_reference
    logits_ref = PasstBasicWrapper(mel=ref.mel, net=ref.net, mode="logits").eval()
    model = passt_loaded["passt-stable-audio"]
    for seconds, seed in ((1.2, 4), (12.5, 5)):
        wave = 0.5 * sound(seconds, seed=seed)
        theirs = stable_audio_recipe(logits_ref, wave)
        ours = distribution_from_window_softmax(model.embed([wave])[0].probs)
        assert np.abs(ours - theirs).max() <= 1e-6


def test_audiocraft_segments_match_audiocraft_rule(passt_loaded) -> None:
    """torch.split into 10 s pieces, pieces of <= 0.15 s (4800 samples) dropped, nothing padded."""
    model = passt_loaded["passt-audiocraft"]
    for samples in (5000, 320000, 320000 + 4800, 320000 + 4801, 700000):
        wave = np.ones(samples, dtype=np.float32)
        expected = [len(p) for p in torch.split(torch.from_numpy(wave), 320000) if len(p) > 4800]
        assert model.frontend(wave)[:, 0].astype(int).tolist() == expected


def test_passt_batches(passt_loaded) -> None:
    model = passt_loaded["passt-stable-audio"]
    assert_batch_size_independent(model, [sound(s, seed=i) for i, s in enumerate([0.3, 1.0, 0.3, 6.0])])


def test_provenance_names_framing_and_weights(passt_loaded) -> None:
    prov = passt_loaded["passt-audiocraft"].provenance()
    assert prov["frontend"]["framing"] == "audiocraft" and "softmax" in prov["frontend"]["class_outputs"]
    assert [w["name"] for w in prov["weights"]] == ["passt-s-f128-p16-s10-ap.476-swa.pt"]
    assert len(prov["weights"][0]["sha256"]) == 64


def test_missing_weights_say_which_file_goes_where(tmp_path: Path) -> None:
    status = registry.availability("passt", tmp_path)
    assert not status.available
    assert str(tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt") in status.reason


@pytest.mark.slow
def test_stable_audio_kl_job_through_a_real_worker(passt_reference, tmp_path_factory) -> None:
    """The normal path end to end: the checkpoint in the model dir by its official name, preloaded by a real
    worker, a KL job (definition stable-audio-metrics) over HTTP; the value equals stable-audio-metrics' recipe
    (reference model, ``F.kl_div((ref + 1e-6).log(), eval, reduction="sum")``, mean over pairs) on the same files."""
    import soundfile as sf
    import torch.nn.functional as F

    from soundcheck import audio
    from soundcheck.client import Client
    from soundcheck.serve import Service
    from tests.conftest import free_port, make_settings

    ref, _ = passt_reference
    logits_ref = PasstBasicWrapper(mel=ref.mel, net=ref.net, mode="logits").eval()
    root = tmp_path_factory.mktemp("passt_service")
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", root, preload=["mel", "passt-stable-audio"])
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    torch.save(ref.net.state_dict(), settings.models_dir / registry.PASST_WEIGHTS.name)
    sets = []
    for name, base in (("ref", 0), ("cand", 10)):
        folder = root / name
        folder.mkdir()
        for i in range(2):
            sf.write(folder / f"{i}.wav", 0.5 * sound(1.0 + 0.2 * i, seed=base + i), SR32)
        sets.append(folder)
    dists = [[stable_audio_recipe(logits_ref, audio.load_mono(p, SR32)) for p in sorted(d.glob("*.wav"))]
             for d in sets]
    expected = np.mean([float(F.kl_div((torch.from_numpy(r) + 1e-6).log(), torch.from_numpy(c), reduction="sum"))
                        for r, c in zip(*dists, strict=True)])
    svc = Service(settings)
    try:
        svc.start(n_workers=1, quiet=True)
        with Client(svc.url) as client:
            r_set, c_set = client.upload(sets[0]), client.upload(sets[1])
            job = client.submit(r_set.id, c_set.id, "passt-stable-audio", ["kl"],
                                options={"bootstrap": 0, "kl": {"definition": "stable-audio-metrics"}})
            done = client.wait(job.id, poll_s=0.2, timeout_s=300)
    finally:
        svc.stop()
    assert done.status == "finished", done.error
    kl = done.result["metrics"]["kl"]
    assert kl["definition"] == "stable-audio-metrics" and kl["n_pairs"] == 2
    assert kl["value"] == pytest.approx(expected, rel=1e-4)
    prov = done.result["provenance"]["embedding"]
    assert prov["model"] == "passt-stable-audio" and prov["frontend"]["framing"] == "stable-audio"
    assert prov["weights"][0]["name"] == "passt-s-f128-p16-s10-ap.476-swa.pt"


def test_the_three_framings_share_one_network(passt_loaded) -> None:
    nets = {id(passt_loaded[m].network) for m in IDS}
    assert len(nets) == 1
