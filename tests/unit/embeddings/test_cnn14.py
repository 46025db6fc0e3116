"""CNN14: our network and loader against panns_inference 0.1.1 on the same random-weight checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundcheck.embeddings.cnn14 import SEGMENT_SAMPLES, Cnn14Network, segment_rows

from .conftest import SR32, noise, tone


def reference_outputs(net: torch.nn.Module, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = net(torch.from_numpy(np.asarray(wave, dtype=np.float32))[None])
    return out["embedding"].numpy(), out["clipwise_output"].numpy()


def test_state_dict_layout_equals_panns(panns_models) -> None:
    ref = panns_models.Cnn14(sample_rate=SR32, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
                             classes_num=527).state_dict()
    ours = Cnn14Network().state_dict()
    assert len(ref) == 84
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    # Our own construction of the STFT kernels and the Slaney mel matrix equals torchlibrosa/librosa's.
    for key in ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight",
                "logmel_extractor.melW"):
        np.testing.assert_allclose(ours[key].numpy(), ref[key].numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seconds", [1.5, 3.0])
def test_clip_embedding_and_probabilities_match_panns(cnn14_reference, cnn14_loaded, seconds: float) -> None:
    net, _ = cnn14_reference
    wave = noise(seconds, sr=SR32, amp=0.2, seed=4) + tone(440.0, seconds, sr=SR32, amp=0.3)
    ref_emb, ref_prob = reference_outputs(net, wave)
    out = cnn14_loaded.embed([wave])[0]
    assert out.frames.shape == (1, 2048) and out.probs.shape == (1, 527)
    assert np.abs(ref_emb).max() > 0.1 and 0.01 < ref_prob.mean() < 0.99  # not degenerate
    assert np.abs(out.frames - ref_emb).max() <= 1e-4
    assert np.abs(out.probs - ref_prob).max() <= 1e-4


def test_long_file_segments_match_panns_on_each_segment(cnn14_reference, cnn14_loaded) -> None:
    net, _ = cnn14_reference
    wave = noise(16.0, sr=SR32, amp=0.2, seed=6)  # 0-10 s, then 6 s left (>= 5 s): the last 10 s, 6-16 s
    out = cnn14_loaded.embed([wave])[0]
    refs = [reference_outputs(net, part) for part in (wave[:SEGMENT_SAMPLES], wave[-SEGMENT_SAMPLES:])]
    assert out.frames.shape == (2, 2048)
    assert np.abs(out.frames - np.concatenate([e for e, _ in refs])).max() <= 1e-4
    assert np.abs(out.probs - np.concatenate([p for _, p in refs])).max() <= 1e-4


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, [(0, 0)]), (0.2, [(0, 0.2)]), (1.0, [(0, 1.0)]), (7.3, [(0, 7.3)]), (10.0, [(0, 10)]),
     (12.0, [(0, 10)]), (16.0, [(0, 10), (6, 10)]), (20.0, [(0, 10), (10, 10)]),
     (24.99, [(0, 10), (10, 10)]), (25.0, [(0, 10), (10, 10), (15, 10)])],
)
def test_framing_of_files_of_any_length(seconds: float, expected: list[tuple[float, float]]) -> None:
    """Rows are (start s, seconds) of the file, short files padded to 1 s; each row keeps its valid length."""
    wave = np.arange(int(round(seconds * SR32)), dtype=np.float32) + 1.0  # sample i has value i + 1
    rows = segment_rows(wave)
    assert rows.shape == (len(expected), 1 + SEGMENT_SAMPLES)
    for row, (start, length) in zip(rows, expected, strict=True):
        valid, first, n = int(row[0]), int(round(start * SR32)), int(round(length * SR32))
        assert valid == max(n, SR32)
        np.testing.assert_array_equal(row[1:1 + n], wave[first:first + n])
        assert np.all(row[1 + n:] == 0)


def test_short_file_is_the_reference_on_the_zero_padded_second(cnn14_reference, cnn14_loaded) -> None:
    net, _ = cnn14_reference
    wave = tone(1000.0, 0.4, sr=SR32)
    ref_emb, _ = reference_outputs(net, np.pad(wave, (0, SR32 - len(wave))))
    assert np.abs(cnn14_loaded.embed([wave])[0].frames - ref_emb).max() <= 1e-4


def test_class_names_only_from_a_labels_csv_in_the_model_dir(cnn14_reference, cnn14_loaded, tmp_path) -> None:
    assert cnn14_loaded.class_names is None and cnn14_loaded.class_indices == list(range(527))
    from soundcheck.embeddings.cnn14 import read_audioset_labels

    csv_path = tmp_path / "class_labels_indices.csv"
    csv_path.write_text("index,mid,display_name\n" + "".join(f'{i},/m/{i},"Name, {i}"\n' for i in range(527)))
    names, mids = read_audioset_labels(csv_path, 527)
    assert names[3] == "Name, 3" and mids[526] == "/m/526"
    csv_path.write_text("index,mid,display_name\n0,/m/0,Speech\n")
    assert read_audioset_labels(csv_path, 527) is None
