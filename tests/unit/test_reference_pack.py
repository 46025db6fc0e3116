"""The reference pack gives back the files exactly as kept: same rows (dtype and bits), names, labels, rates,
silence flags, frame counts and probabilities; sets it cannot hold in one array are not packed."""

from __future__ import annotations

import numpy as np
import pytest

from soundcheck.evaluation import FileEmbedding
from soundcheck.streaming import mean_only
from worker.reference_pack import pack, unpack


def _files(probs: bool) -> list[FileEmbedding]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(7):
        n = int(rng.integers(1, 5))
        out.append(FileEmbedding(name=f"d/{i}.wav", frames=rng.standard_normal((n, 5)).astype(np.float32),
                                 probs=rng.random((n, 3)).astype(np.float32) if probs else None,
                                 label=None if i % 3 == 0 else f"c{i % 2}", sample_rate=None if i == 4 else 16000,
                                 silent=i == 2, predicted="x" if i == 1 else None))
    return out


def test_frames_and_fields_come_back_bit_for_bit() -> None:
    for probs in (False, True):
        files = _files(probs)
        back, rows = unpack(pack(files))
        assert len(back) == len(files) and np.array_equal(rows, np.concatenate([f.frames for f in files]))
        for a, b in zip(files, back, strict=True):
            assert b.frames.dtype == a.frames.dtype and np.array_equal(a.frames, b.frames)
            assert (b.name, b.label, b.predicted, b.sample_rate, b.silent, b.n_frames) == \
                (a.name, a.label, a.predicted, a.sample_rate, a.silent, a.n_frames)
            assert (b.probs is None) == (a.probs is None)
            if a.probs is not None:
                assert np.array_equal(a.probs, b.probs)


def test_file_means_keep_their_frame_counts() -> None:
    files = [mean_only(f) for f in _files(False)]
    back, _ = unpack(pack(files))
    assert [f.n_frames for f in back] == [f.n_frames for f in files]
    assert all(b.frames.dtype == np.float64 and np.array_equal(a.frames, b.frames)
               for a, b in zip(files, back, strict=True))


def test_what_one_array_cannot_hold_is_not_packed() -> None:
    files = _files(False)
    assert pack([]) is None
    assert pack([*files, FileEmbedding(name="wide.wav", frames=np.zeros((2, 6), dtype=np.float32))]) is None
    assert pack([*files, FileEmbedding(name="f64.wav", frames=np.zeros((2, 5)))]) is None


def test_unpacked_rows_are_read_only_views_of_the_value() -> None:
    """No copy on unpack (the arrays are views of the bytes Redis returned), and nothing can change them."""
    files = _files(True)
    data = pack(files)
    back, rows = unpack(data)
    assert not rows.flags.writeable and not back[0].probs.flags.writeable
    assert np.shares_memory(back[3].frames, rows)


def test_a_value_of_another_format_is_refused() -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, format=np.int64(1), rows=np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="format 2"):
        unpack(buf.getvalue())
