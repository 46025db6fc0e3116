"""LAION-CLAP: our HTS-AT, RoBERTa and front ends against laion_clap 1.1.7 on the same random-weight checkpoints.

The reference networks are laion_clap's own ``create_model`` (built offline, see ``clap_reference``) with random
weights, saved in the published checkpoint layout under the official file names and loaded by us through
``registry.load``; the reference embeddings are laion_clap's ``get_audio_features`` + ``get_audio_embedding``
driven as fadtk (non-fusion ids) and stable-audio-metrics (fusion id) drive them, and ``get_text_embedding``
after transformers' ``RobertaTokenizer`` on a test vocabulary.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("laion_clap") is None:  # never imported: `import laion_clap` goes to the hub
    pytest.skip("reference package: pip install --no-deps laion_clap==1.1.7", allow_module_level=True)
pytest.importorskip("torchlibrosa")
pytest.importorskip("tokenizers")

from soundcheck.embeddings import registry  # noqa: E402
from soundcheck.embeddings.clap import fadtk_windows, htk_mel_matrix  # noqa: E402

from . import clap_reference as ref  # noqa: E402
from .conftest import noise, tone, trust  # noqa: E402
from .test_batching import assert_batch_size_independent  # noqa: E402

# Building three laion_clap models (HTS-AT + RoBERTa-base each) takes minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1200)
SR48 = 48000
AUDIO, MUSIC, FUSION = "clap-laion-audio", "clap-laion-music", "clap-laion-audio-fusion"
BUILD = {AUDIO: ("HTSAT-tiny", False, 11), MUSIC: ("HTSAT-base", False, 12), FUSION: ("HTSAT-tiny", True, 13)}
CAPTIONS = ["a dog barks twice", "rain on a tin roof", "a dog and a cat", "solo piano, slow and quiet",
            "", "Émigré café: 3 trumpets!!", "a " * 100]


@pytest.fixture(scope="module")
def clap_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, object]:
    clap_module, data = ref.laion_modules()
    model_dir = tmp_path_factory.mktemp("clap_models")
    nets = {}
    for model_id, (amodel, fusion, seed) in BUILD.items():
        nets[model_id] = ref.build_clap(clap_module, amodel, fusion, seed)
        ref.save_official(nets[model_id][0], model_dir / registry.clap_weights(model_id).name)
    ref.write_test_tokenizer(model_dir / "roberta-base", CAPTIONS)
    return nets, model_dir, data


@pytest.fixture(scope="module")
def clap_loaded(clap_reference) -> dict:
    _, model_dir, _ = clap_reference
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, tuple(BUILD), patch)
        return {m: registry.load(m, model_dir) for m in BUILD}


def sound(seconds: float, seed: int) -> np.ndarray:
    return noise(seconds, sr=SR48, amp=0.2, seed=seed) + tone(440.0 + 110 * seed, seconds, sr=SR48, amp=0.3)


def test_state_dict_layout_equals_laion_clap(clap_reference, clap_loaded) -> None:
    nets, _, _ = clap_reference
    for model_id, model in clap_loaded.items():
        theirs = {k[len("audio_branch."):]: tuple(v.shape) for k, v in nets[model_id][0].state_dict().items()
                  if k.startswith("audio_branch.")}
        ours = {k: tuple(v.shape) for k, v in model.network.state_dict().items()}
        not_ours = {k for k in theirs if k not in ours}
        assert not_ours == {k for k in theirs if k.startswith(("tscam_conv.", "head.", "spectrogram_extractor.",
                                                               "logmel_extractor."))
                            or k.endswith((".relative_position_index", ".attn_mask"))}
        assert ours == {k: v for k, v in theirs.items() if k in ours}


@pytest.mark.parametrize("samples", [0, 1, 47999, 48000, 48001, 480000, 530000])
def test_windows_are_fadtk_chunks(samples: int) -> None:
    wave = noise(samples / SR48 + 1e-9, sr=SR48, seed=samples)[:samples]
    ours = fadtk_windows(wave)
    starts = list(range(0, samples, SR48)) or [0]
    assert ours.shape == (len(starts), 480000)
    for row, start in zip(ours, starts, strict=True):
        piece = wave[start:start + 480000]
        assert np.array_equal(row[:len(piece)], piece) and not row[len(piece):].any()


def test_fusion_mel_matrix_is_torchaudios() -> None:
    torchaudio = pytest.importorskip("torchaudio")
    theirs = torchaudio.functional.melscale_fbanks(513, 50.0, 14000.0, 64, 48000, norm=None, mel_scale="htk")
    # torchaudio builds it in float32: agreement to float32 rounding of values in [0, 1]
    assert np.abs(htk_mel_matrix().numpy() - theirs.double().numpy()).max() < 1e-5


@pytest.mark.parametrize(("model_id", "seconds"), [(AUDIO, 0.7), (AUDIO, 2.5), (MUSIC, 1.3)])
def test_audio_embeddings_match_laion_clap_as_fadtk_runs_it(clap_reference, clap_loaded, model_id, seconds) -> None:
    nets, _, data = clap_reference
    model, cfg = nets[model_id]
    wave = sound(seconds, seed=int(seconds * 10))
    theirs = ref.fadtk_embeddings(model, cfg, data, wave)
    ours = clap_loaded[model_id].embed([wave])[0].frames
    assert ours.shape == theirs.shape == (int(np.ceil(seconds)), 512)
    assert np.abs(theirs).max() > 0.02  # normalised 512-d: a spread-out vector, not a degenerate one
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.parametrize("seconds", [0.4, 3.0, 10.0, 10.004, 13.7])
def test_fusion_embedding_matches_stable_audio_metrics_recipe(clap_reference, clap_loaded, seconds) -> None:
    """<= 10 s: repeatpad, one mel four times; > 10 s: shrunk whole mel + 3 chunks through the AFF fusion."""
    nets, _, data = clap_reference
    model, cfg = nets[FUSION]
    wave = sound(seconds, seed=int(seconds * 10) % 7)
    theirs = ref.stable_audio_embedding(model, cfg, data, wave)
    ours = clap_loaded[FUSION].embed([wave])[0].frames
    assert ours.shape == (1, 512)
    assert np.abs(ours[0] - theirs).max() <= 1e-4


def test_text_embeddings_match_laion_clap(clap_reference, clap_loaded) -> None:
    import transformers

    nets, model_dir, _ = clap_reference
    tokenizer = transformers.RobertaTokenizer(vocab=str(model_dir / "roberta-base" / "vocab.json"),
                                              merges=str(model_dir / "roberta-base" / "merges.txt"))
    ours_tok = clap_loaded[AUDIO].text_parts()[0]
    ids, mask = ours_tok(CAPTIONS)
    theirs_tok = tokenizer(CAPTIONS, padding="max_length", truncation=True, max_length=77, return_tensors="np")
    assert np.array_equal(ids, theirs_tok["input_ids"]) and np.array_equal(mask, theirs_tok["attention_mask"])
    assert mask.sum(axis=1).max() == 77 and mask.sum(axis=1).min() == 2  # truncation and the empty caption
    for model_id in (AUDIO, FUSION):
        theirs = ref.text_embeddings(nets[model_id][0], tokenizer, CAPTIONS)
        ours = clap_loaded[model_id].embed_text(CAPTIONS)
        assert ours.shape == (len(CAPTIONS), 512)
        assert np.abs(ours - theirs).max() <= 1e-4
        # independent of how many texts come together
        assert np.array_equal(clap_loaded[model_id].embed_text(CAPTIONS[2:3])[0], ours[2])


def test_batch_size_independent(clap_loaded) -> None:
    waves = [sound(s, seed=i) for i, s in enumerate((0.3, 2.2, 1.0))]
    assert_batch_size_independent(clap_loaded[AUDIO], waves)
    assert_batch_size_independent(clap_loaded[FUSION], waves + [sound(10.5, seed=4)])


def test_missing_tokenizer_files_say_which(tmp_path: Path, clap_reference) -> None:
    _, model_dir, _ = clap_reference
    (tmp_path / registry.clap_weights(AUDIO).name).symlink_to(model_dir / registry.clap_weights(AUDIO).name)
    status = registry.availability(AUDIO, tmp_path)
    assert status.available  # audio embeddings need only the checkpoint
    names = {w.name: w.present for w in status.weights}
    assert names == {"630k-audioset-best.pt": True, "vocab.json": False, "merges.txt": False}
    with pytest.MonkeyPatch.context() as patch:
        trust(tmp_path, (AUDIO,), patch)
        model = registry.load(AUDIO, tmp_path)
    with pytest.raises(registry.ModelUnavailable, match=r"vocab\.json.*roberta-base"):
        model.embed_text(["a dog"])
    assert torch.is_tensor(model.mel_matrix)


@pytest.mark.slow
def test_clap_score_job_through_a_real_worker(clap_reference, tmp_path_factory) -> None:
    """Captions in the upload, the fusion checkpoint and tokenizer files in the model dir by their official names,
    a real worker that preloaded the model, a clap_score job over HTTP: equal to the cosine, in numpy, of
    laion_clap's own embeddings (reference network, stable-audio-metrics recipe) of the same decoded files."""
    import httpx
    import soundfile as sf
    import transformers

    from soundcheck import audio
    from soundcheck.client import Client
    from soundcheck.serve import Service
    from tests.conftest import free_port, make_settings

    nets, model_dir, data = clap_reference
    net, cfg = nets[FUSION]
    root = tmp_path_factory.mktemp("clap_service")
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", root, preload=["mel", FUSION])
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    name = registry.clap_weights(FUSION).name
    (settings.models_dir / name).symlink_to(model_dir / name)
    (settings.models_dir / "roberta-base").symlink_to(model_dir / "roberta-base")
    captions = {"0.wav": "a dog barks twice", "1.wav": "rain on a tin roof", "2.wav": "Émigré café: 3 trumpets!!"}
    sets = []
    for set_name, base in (("ref", 0), ("cand", 10)):
        folder = root / set_name
        folder.mkdir()
        for i, seconds in enumerate((0.8, 11.0, 2.0, 1.5)):  # 44.1 kHz: decoded and resampled to 48 kHz
            sf.write(folder / f"{i}.wav", sound(seconds, seed=base + i) * 0.5, 44100)
        sets.append(folder)
    (sets[1] / "captions.csv").write_text("name,caption\n" + "".join(f'{k},"{v}"\n' for k, v in captions.items()),
                                          encoding="utf-8")  # 3.wav has no caption: unpaired
    tokenizer = transformers.RobertaTokenizer(vocab=str(model_dir / "roberta-base" / "vocab.json"),
                                              merges=str(model_dir / "roberta-base" / "merges.txt"))
    names = sorted(captions)
    audio_emb = np.stack([ref.stable_audio_embedding(net, cfg, data, audio.load_mono(sets[1] / n, SR48))
                          for n in names]).astype(np.float64)
    text_emb = ref.text_embeddings(net, tokenizer, [captions[n] for n in names]).astype(np.float64)
    cosines = (audio_emb * text_emb).sum(1) / np.linalg.norm(audio_emb, axis=1) / np.linalg.norm(text_emb, axis=1)
    svc = Service(settings)
    try:
        svc.start(n_workers=1, quiet=True)
        with Client(svc.url) as client:
            reference, candidate = client.upload(sets[0]), client.upload(sets[1])
            assert candidate.n_captions == 3 and reference.n_captions == 0
            done = client.wait(client.submit(reference.id, candidate.id, FUSION, ["clap_score"]).id, poll_s=0.2,
                               timeout_s=400)
            for cand, model_id in ((candidate.id, "mel"), (reference.id, FUSION)):  # not CLAP; no captions
                answer = httpx.post(f"{svc.url}/v1/jobs", json={"reference": reference.id, "candidate": cand,
                                                                "embedding": model_id, "metrics": ["clap_score"]})
                assert answer.status_code == 422 and "clap_score" in answer.json()["detail"], answer.text
    finally:
        svc.stop()
    assert done.status == "finished", done.error
    score = done.result["metrics"]["clap_score"]
    assert score["n_paired"] == 3 and score["n_unpaired"] == 1
    assert score["value"] == pytest.approx(cosines.mean(), abs=1e-5)
    assert [score["per_file"][n] for n in names] == pytest.approx(list(cosines), abs=1e-5)
    assert score["interval"]["low"] <= score["value"] <= score["interval"]["high"]
    prov = done.result["provenance"]["embedding"]
    assert prov["model"] == FUSION and prov["weights"][0]["name"] == name
    assert {w["name"] for w in prov["text"]["weights"]} == {name, "vocab.json", "merges.txt"}


def test_a_multichannel_input_is_averaged_first(clap_loaded) -> None:
    """``[frames, channels]`` as librosa.load(mono=True) gives it to the peers: the mean of the channels."""
    stereo = np.stack([sound(1.2, seed=1), sound(1.2, seed=2)], axis=1)
    mono = (stereo.astype(np.float64).mean(axis=1)).astype(np.float32)
    for model_id in (AUDIO, FUSION):
        model = clap_loaded[model_id]
        np.testing.assert_array_equal(model.frontend(stereo), model.frontend(mono))
