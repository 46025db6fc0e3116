"""A preset job end to end through the real service (own Redis, a real worker, real uvicorn), with test
checkpoints in the official key layouts: `"preset": "audioldm"` names every fixed choice, and its numbers equal
audioldm_eval's computations run here on the peers' own networks (torchvggish with the last ReLU dropped as
frechet_audio_distance does, panns_inference's Cnn14 at 16 kHz) with the same random weights."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from scipy import linalg

from soundcheck.client import Client
from soundcheck.embeddings import registry
from soundcheck.embeddings.base import sha256_file
from soundcheck.serve import Service
from tests.conftest import make_settings
from tests.unit.embeddings.conftest import he_init_, import_panns_models, random_panns_cnn14

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, torch.nn.Module, Path]:
    """(VGGish without its last ReLU, CNN14 16 kHz, a model dir holding both checkpoints)."""
    from torchvggish import torchvggish

    panns_models = import_panns_models(tmp_path_factory.mktemp("panns_home"))

    model_dir = tmp_path_factory.mktemp("preset_models")
    vggish = torchvggish._vgg(False)
    he_init_(vggish, seed=11)
    vggish.eval()
    torch.save(vggish.state_dict(), model_dir / registry.VGGISH_WEIGHTS.name)
    cnn = random_panns_cnn14(panns_models, 16000, seed=10)
    torch.save({"model": cnn.state_dict()}, model_dir / registry.CNN14_16K_WEIGHTS.name)
    # the random VGGish is not the published file: the operator declares it, as for a fine-tune
    digest = sha256_file(model_dir / registry.VGGISH_WEIGHTS.name)
    (model_dir / registry.DECLARED_SUMS).write_text(f"{digest}  {registry.VGGISH_WEIGHTS.name}\n")
    noact = copy.deepcopy(vggish)
    noact.embeddings = torch.nn.Sequential(*list(noact.embeddings.children())[:-1])  # use_activation=False
    return noact, cnn, model_dir


@pytest.fixture(scope="module")
def preset_service(peers, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("preset_service")
    settings = make_settings(f"redis://127.0.0.1:{_port()}/0", root, model_dir=peers[2],
                             preload=["mel", "vggish-noact", "cnn14-16k"])
    svc = Service(settings)
    try:
        svc.start(n_workers=1, quiet=True)
        yield svc
    finally:
        svc.stop()


def _port() -> int:
    from tests.conftest import free_port

    return free_port()


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def _waves(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): sf.read(p, dtype="float64")[0] for p in sorted(folder.rglob("*.wav"))}


def test_audioldm_preset_reproduces_audioldm_eval(preset_service: Service, peers, example_sets) -> None:
    from torchvggish import vggish_input

    noact, cnn, _ = peers
    with Client(preset_service.url) as client:
        ref, cand = client.upload(example_sets[0]).id, client.upload(example_sets[1]).id
        response = client._http.post("/v1/jobs", json={"reference": ref, "candidate": cand, "preset": "audioldm",
                                                        "options": {"bootstrap": 0}})
        assert response.status_code == 202, response.text
        try:
            view = client.wait(response.json()["id"], poll_s=0.2, timeout_s=600)
        except TimeoutError:
            for log in (preset_service.settings.data_dir / "logs").glob("*.log"):
                print(log.name, log.read_text()[-4000:])
            raise
    assert view.status == "finished", view.error
    result = view.result
    assert result["preset"]["name"] == "audioldm" and "KL" in result["preset"]["choices"]
    assert result["preset"]["differences"] and result["preset"]["not_reproduced"]
    metrics = result["metrics"]
    assert set(metrics) == {"fad_vggish", "fd_panns", "kl_softmax", "kl_sigmoid", "is_panns"}
    assert metrics["fd_panns"]["embedding"] == "cnn14-16k" and metrics["fd_panns"]["title"] == "FD (PANNs)"
    weights = result["provenance"]["embeddings"]["vggish-noact"]["weights"]
    assert weights[0]["official"] is False  # the operator-declared checkpoint is said to be one

    ref_waves, cand_waves = _waves(example_sets[0]), _waves(example_sets[1])
    with torch.no_grad():
        def vgg(w: np.ndarray) -> np.ndarray:
            return noact(vggish_input.waveform_to_examples(w, 16000)).numpy().astype(np.float64)

        def panns(w: np.ndarray) -> dict[str, torch.Tensor]:
            x = torch.from_numpy(w.astype(np.float32))[None]
            x = F.pad(x, (0, max(0, 32000 - x.shape[-1])))  # pad_short_audio
            out = cnn(x)
            return {"2048": out["embedding"][0].double(), "logits": cnn.fc_audioset(out["embedding"])[0].double()}

        ref_v = np.concatenate([vgg(w) for w in ref_waves.values()])
        cand_v = np.concatenate([vgg(w) for w in cand_waves.values()])
        ref_p = {n: panns(w) for n, w in ref_waves.items()}
        cand_p = {n: panns(w) for n, w in cand_waves.items()}
    # Our embeddings equal the peers' to 1e-4 (tests/unit/embeddings): the distances agree to that precision.
    assert metrics["fad_vggish"]["value"] == pytest.approx(_frechet(ref_v, cand_v), rel=1e-3)
    fd = _frechet(np.stack([p["2048"].numpy() for p in ref_p.values()]),
                  np.stack([p["2048"].numpy() for p in cand_p.values()]))
    assert metrics["fd_panns"]["value"] == pytest.approx(fd, rel=1e-3)
    names = sorted(set(ref_p) & set(cand_p))
    f1 = torch.stack([cand_p[n]["logits"] for n in names])  # audioldm_eval's features_1: the generated set
    f2 = torch.stack([ref_p[n]["logits"] for n in names])
    kl_softmax = F.kl_div((f1.softmax(dim=1) + 1e-6).log(), f2.softmax(dim=1), reduction="sum") / len(f1)
    kl_sigmoid = F.kl_div((f1.sigmoid() + 1e-6).log(), f2.sigmoid(), reduction="sum") / len(f1)
    assert metrics["kl_softmax"]["value"] == pytest.approx(float(kl_softmax), rel=1e-3)
    assert metrics["kl_sigmoid"]["value"] == pytest.approx(float(kl_sigmoid), rel=1e-3)
    features = torch.stack([cand_p[n]["logits"] for n in cand_waves])  # files in the manifest's (sorted) order
    features = features[np.random.RandomState(2020).permutation(len(features))]
    p, log_p = features.softmax(dim=1), features.log_softmax(dim=1)
    n, scores = len(p), []
    for i in range(10):
        chunk, log_chunk = p[i * n // 10:(i + 1) * n // 10], log_p[i * n // 10:(i + 1) * n // 10]
        scores.append((chunk * (log_chunk - chunk.mean(dim=0, keepdim=True).log())).sum(dim=1).mean().exp().item())
    assert metrics["is_panns"]["value"] == pytest.approx(float(np.mean(scores)), rel=1e-3)


def test_preset_refuses_embedding_and_metrics_and_lists_its_choices(preset_service: Service) -> None:
    with Client(preset_service.url) as client:
        presets = client._http.get("/v1/presets").json()
        assert {p["name"] for p in presets} == {"audioldm", "stable-audio", "fadtk"}
        one = client._http.get("/v1/presets/stable-audio").json()
        assert one["metrics"][1]["options"]["kl"]["definition"] == "stable-audio-metrics"
        assert client._http.get("/v1/presets/nope").status_code == 404
        bad = client._http.post("/v1/jobs", json={"reference": "a" * 64, "candidate": "b" * 64,
                                                  "preset": "audioldm", "embedding": "vggish"})
        assert bad.status_code == 422 and "leave out" in bad.text
