"""`"preset": "stable-audio"` end to end on the example sets with test checkpoints (random weights in the
official layouts, by their official names): FD on OpenL3 (stereo recipe), KL on PaSST (stable-audio-metrics'
definition) and the CLAP score (fusion checkpoint, captions in the upload), through the real service. Each number
equals the plain job that computes the same metric on the same model (the models' parity with the reference
packages is tested in tests/unit/embeddings), and the result names every choice the preset fixed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from soundcheck.client import Client
from soundcheck.embeddings import registry
from soundcheck.serve import Service
from tests.conftest import free_port, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
pytest.importorskip("torchopenl3")
pytest.importorskip("hear21passt")

MODELS = ["mel", "openl3-mel256-music-512-stable-audio", "passt-stable-audio", "clap-laion-audio-fusion"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.embeddings import clap_reference as clap_ref
    from tests.unit.embeddings.test_openl3 import reference_network
    from tests.unit.embeddings.test_passt import reference_model

    root = tmp_path_factory.mktemp("stable_audio_models")
    torch.save(reference_network(512, seed=21).state_dict(), root / registry.openl3_weights("music", 512).name)
    torch.save(reference_model(seed=22).net.state_dict(), root / registry.PASST_WEIGHTS.name)
    clap_module, _ = clap_ref.laion_modules()
    net, _ = clap_ref.build_clap(clap_module, "HTSAT-tiny", True, 23)
    clap_ref.save_official(net, root / registry.clap_weights("clap-laion-audio-fusion").name)
    clap_ref.write_test_tokenizer(root / "roberta-base", ["a tone", "a chord", "noise", "a bright sound"])
    return root


def test_stable_audio_preset_runs_end_to_end_and_names_its_choices(model_dir: Path, example_sets,
                                                                   tmp_path: Path) -> None:
    reference, candidate = example_sets
    captioned = tmp_path / "candidate"
    shutil.copytree(candidate, captioned)
    names = sorted(str(p.relative_to(captioned)) for p in captioned.rglob("*.wav"))
    (captioned / "captions.csv").write_text("name,caption\n" + "".join(
        f"{n},{'a tone' if 'tone' in n else 'a chord' if 'chord' in n else 'noise'}\n" for n in names[:-1]))
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "svc", model_dir=model_dir,
                             preload=MODELS)
    svc = Service(settings)
    try:
        svc.start(n_workers=1, quiet=True)
        with Client(svc.url) as client:
            ref, cand = client.upload(reference).id, client.upload(captioned).id
            options = {"bootstrap": 0}
            preset = client.wait(client.submit(ref, cand, "preset:stable-audio", options=options).id, poll_s=0.5,
                                 timeout_s=1200)
            assert preset.status == "finished", preset.error
            plain = {
                "fd_openl3": client.evaluate(ref, cand, MODELS[1], ["fad"], options, timeout_s=600),
                "kl_passt": client.evaluate(ref, cand, MODELS[2], ["kl"], {
                    **options, "kl": {"definition": "stable-audio-metrics"}}, timeout_s=600),
                "clap_score": client.evaluate(ref, cand, MODELS[3], ["clap_score"], options, timeout_s=600),
            }
    finally:
        svc.stop()
    result = preset.result
    assert preset.spec.preset == "stable-audio" and preset.spec.embedding == "preset:stable-audio"
    assert set(result["metrics"]) == {"fd_openl3", "kl_passt", "clap_score"}
    for label, view in plain.items():
        assert view.status == "finished", view.error
        metric = result["metrics"][label]["metric"]
        assert result["metrics"][label]["value"] == pytest.approx(view.result["metrics"][metric]["value"],
                                                                  rel=1e-12), label
    assert result["metrics"]["kl_passt"]["definition"] == "stable-audio-metrics"
    assert result["metrics"]["clap_score"]["n_unpaired"] == 1
    named = result["preset"]
    assert named["follows"].startswith("stable-audio-metrics")
    assert {"FD model", "KL model", "KL", "CLAP score", "resampler"} <= set(named["choices"])
    assert named["differences"] and named["not_reproduced"]
    assert set(result["provenance"]["embeddings"]) == set(MODELS[1:])
