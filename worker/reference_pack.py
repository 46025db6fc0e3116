"""A reference set in the form its metrics keep it (``soundcheck.streaming``: file means or frames), packed into
one cached value, so a repeat job reads one value instead of one cached embedding per reference file.

The rows are stored as they were (float32 frames stay float32, float64 means stay float64) and handed back as
views of one array, so every number computed from them is the same, bit for bit. Names, labels, sample rates,
silence flags, frame counts and class probabilities come back too (diagnostics and warnings read them).

Layout (format 2): ``MAGIC``, an 8-byte little-endian header length, a JSON header (the per-file fields and, per
array, its dtype, shape and offset), then each array's raw bytes at an 8-byte aligned offset. Unpacking is
``np.frombuffer`` on the value Redis returned: no parse, no copy (format 1, an ``np.savez`` archive, copied
every array out of the zip and cost ~25 ms a 29 MB YAMNet pack). The arrays come back read-only, so nothing
downstream can change a cached reference in place.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

from soundcheck.evaluation import FileEmbedding

MAGIC = b"SCPACK2\n"
_LEN = struct.Struct("<Q")
#: Largest pack kept, as a share of the stats cache's byte bound (a bigger set is read file by file instead,
#: rather than pushing every other reference's statistics out of the cache).
MAX_SHARE = 1 / 16


def pack(files: Sequence[FileEmbedding], probs: bool = True) -> bytes | None:
    """The packed bytes of the files; None for an empty set or files of mixed shapes or dtypes. Class
    probabilities only with ``probs`` (only KL reads the reference's: they would double a YAMNet pack)."""
    if not files:
        return None
    rows = [np.atleast_2d(f.frames) for f in files]
    if len({(r.shape[1], r.dtype.str) for r in rows}) != 1:
        return None
    arrays = {"rows": np.concatenate(rows)}
    if probs and all(f.probs is not None for f in files):
        parts = [np.atleast_2d(f.probs) for f in files]
        if len({(p.shape[1], p.dtype.str) for p in parts}) != 1:
            return None
        arrays["probs"] = np.concatenate(parts)
        prob_rows = [len(p) for p in parts]
    header: dict = {
        "counts": [len(r) for r in rows], "names": [f.name for f in files], "labels": [f.label for f in files],
        "predicted": [f.predicted for f in files], "sample_rates": [_int(f.sample_rate) for f in files],
        "silent": [bool(f.silent) for f in files], "n_frames": [_int(f.n_frames) for f in files],
        "prob_rows": prob_rows if "probs" in arrays else None, "arrays": {}}
    offset = 0
    for name, arr in arrays.items():
        header["arrays"][name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset}
        offset += -(-arr.nbytes // 8) * 8
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-(len(MAGIC) + _LEN.size + len(head)) % 8)  # the arrays start 8-byte aligned
    out = bytearray(MAGIC + _LEN.pack(len(head)) + head)
    base = len(out)
    out.extend(bytes(offset))
    for name, arr in arrays.items():
        start = base + header["arrays"][name]["offset"]
        out[start:start + arr.nbytes] = np.ascontiguousarray(arr).tobytes()
    return bytes(out)


def _int(value: int | None) -> int | None:
    return None if value is None else int(value)


def unpack(data: bytes) -> tuple[list[FileEmbedding], np.ndarray]:
    """The files, and their rows as one array (the concatenation of their frames, which they are views of)."""
    if not data.startswith(MAGIC):
        raise ValueError("not a reference pack of format 2")
    (size,) = _LEN.unpack_from(data, len(MAGIC))
    base = len(MAGIC) + _LEN.size + size
    header = json.loads(data[len(MAGIC) + _LEN.size:base])
    arrays = {}
    for name, info in header["arrays"].items():
        dtype, shape = np.dtype(info["dtype"]), tuple(info["shape"])
        count = int(np.prod(shape))
        arrays[name] = np.frombuffer(data, dtype, count, base + info["offset"]).reshape(shape)
    rows, probs = arrays["rows"], arrays.get("probs")
    starts = np.r_[0, np.cumsum(header["counts"], dtype=np.int64)].tolist()
    prob_starts = np.r_[0, np.cumsum(header["prob_rows"], dtype=np.int64)].tolist() if probs is not None else None
    names, labels, predicted = header["names"], header["labels"], header["predicted"]
    rates, silent, n_frames = header["sample_rates"], header["silent"], header["n_frames"]
    return [FileEmbedding(
        name=names[i], frames=rows[starts[i]:starts[i + 1]],
        probs=probs[prob_starts[i]:prob_starts[i + 1]] if probs is not None else None,
        label=labels[i], predicted=predicted[i], sample_rate=rates[i], silent=silent[i],
        n_frames=n_frames[i]) for i in range(len(names))], rows
