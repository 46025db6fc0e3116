"""Kernel Audio Distance (Chung et al., "KAD: No More FAD!", 2025): unbiased MMD^2 with a Gaussian RBF kernel.

    MMD^2_u = mean_{i != j} k(r_i, r_j) + mean_{i != j} k(c_i, c_j) - 2 mean_{i, j} k(r_i, c_j)
    k(a, b) = exp(-||a - b||^2 / (2 h^2))

Kernel sums are accumulated block by block (``block_size`` rows x ``block_size`` columns at a time), so memory
stays O(block^2 + n) for any set size; within-set sums use only the upper block triangle. Both sets are
shifted by the reference mean first (the kernel is translation invariant) so that ||a||^2 + ||b||^2 - 2 a.b
does not cancel catastrophically. Bootstrap resamples are taken ``RESAMPLE_BLOCK`` at a time inside each
kernel block, so memory does not grow with the number of resamples.

Everything that depends on the reference alone (bandwidth, reference term, the centred frames) is a
:class:`KernelReference`, cacheable as bytes; a job given one computes the same numbers, bit for bit, as a job
that builds it. The sums run on numpy, or on torch (float64) on a device such as CUDA (``device``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from soundcheck.metrics._kernel_backend import Backend, backend_for
from soundcheck.metrics.pairwise import median_of_pairs

#: Largest reference set whose median pairwise distance is computed over all pairs.
MEDIAN_MAX_POINTS = 4000
DEFAULT_BLOCK = 2048
#: Bootstrap resamples handled together in one kernel block (memory ~ block x this, independent of B).
RESAMPLE_BLOCK = 256
_FORMAT = 1

Checkpoint = Callable[[], None] | None


def median_pairwise_distance(x: np.ndarray, max_points: int = MEDIAN_MAX_POINTS, seed: int = 0,
                             checkpoint: Checkpoint = None) -> tuple[float, int]:
    """Median L2 distance over all pairs of ``x`` (or of a seeded subsample of ``max_points`` rows) and the
    number of rows used. 4,000 rows give ~8M pairs: the median is then known to well under 1%."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("the median pairwise distance needs at least 2 frames")
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    return median_of_pairs(x, checkpoint=checkpoint), len(x)


def subsample_rows(n: int, max_rows: int | None, seed: int, stream: int) -> np.ndarray | None:
    """Sorted indices of a seeded subsample of ``max_rows`` of ``n`` rows, or None when all rows are kept.
    ``stream`` keeps the reference (0) and candidate (1) draws independent for one seed."""
    if not max_rows or n <= max_rows:
        return None
    return np.sort(np.random.default_rng([seed, stream]).choice(n, max_rows, replace=False))


def _call(checkpoint: Checkpoint) -> None:
    if checkpoint is not None:
        checkpoint()


def _within_sum(be: Backend, x: np.ndarray, gamma: float, block: int, checkpoint: Checkpoint) -> float:
    """sum_{i != j} k(x_i, x_j)."""
    xs = be.to(x)
    sq = be.sq_norms(xs)
    total = 0.0
    for i in range(0, len(x), block):
        _call(checkpoint)
        for j in range(i, len(x), block):
            k = be.kernel_block(xs[i:i + block], sq[i:i + block], xs[j:j + block], sq[j:j + block], gamma)
            if i == j:
                be.zero_diagonal(k)
            total += (1.0 if i == j else 2.0) * be.total(k)
    return total


def _within_weighted(be: Backend, x: np.ndarray, frame_file: np.ndarray, weight_blocks: Sequence[np.ndarray],
                     n_files: int, gamma: float, block: int, groups: bool, checkpoint: Checkpoint
                     ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """sum_{i != j} w_f(i) w_f(j) k(x_i, x_j) for each row of each block of file weights ([b, F] -> [b]),
    diagonal excluded; with ``groups`` also sum_{i != j, same file} k(x_i, x_j) per file (frame_file sorted).
    Frame weights are gathered per kernel block, so nothing of size frames x resamples is ever built."""
    xs, ff = be.to(x), be.index(frame_file)
    sq = be.sq_norms(xs)
    weights = [be.to(w) for w in weight_blocks]
    outs = [be.zeros(len(w)) for w in weight_blocks]
    per_file = be.zeros(n_files) if groups else None
    for i in range(0, len(x), block):
        _call(checkpoint)
        rows = slice(i, i + block)
        for j in range(i, len(x), block):
            cols = slice(j, j + block)
            k = be.kernel_block(xs[rows], sq[rows], xs[cols], sq[cols], gamma)
            if i == j:
                be.zero_diagonal(k)
            factor = 1.0 if i == j else 2.0
            for out, w in zip(outs, weights, strict=True):
                out += factor * be.weighted_pairs(w[:, ff[rows]].T, k, w[:, ff[cols]].T)
            if per_file is not None and frame_file[min(i + block, len(x)) - 1] >= frame_file[j]:
                per_file += factor * be.group_sums(ff[rows], ff[cols], k, n_files)
    return [be.host(o) for o in outs], (be.host(per_file) if per_file is not None else None)


def _cross_column_sums(be: Backend, x: np.ndarray, y: np.ndarray, gamma: float, block: int,
                       checkpoint: Checkpoint) -> np.ndarray:
    """sum_i k(x_i, y_j) for every j."""
    xs, ys = be.to(x), be.to(y)
    x_sq, y_sq = be.sq_norms(xs), be.sq_norms(ys)
    out = be.zeros(len(y))
    for i in range(0, len(x), block):
        _call(checkpoint)
        rows = slice(i, i + block)
        for j in range(0, len(y), block):
            cols = slice(j, j + block)
            out[cols] += be.column_sums(be.kernel_block(xs[rows], x_sq[rows], ys[cols], y_sq[cols], gamma))
    return be.host(out)


@dataclass(frozen=True)
class KadResult:
    value: float  # scale * MMD^2_u
    mmd2: float
    bandwidth: float
    scale: float
    bandwidth_source: str  # "given" or how the median was taken
    median_points: int | None  # reference frames the median was computed over (None when given)
    #: frames each set had before a seeded subsample to ``max_frames`` (None: all frames used), and the seed
    subsampled_from: dict | None = None
    backend: str = "numpy"  # "numpy" or "torch:<device type>"


def _bandwidth(ref: np.ndarray, bandwidth: float | None, seed: int, block: int,
               checkpoint: Checkpoint) -> tuple[float, str, int | None]:
    if bandwidth is not None:
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        return float(bandwidth), "given", None
    h, used = median_pairwise_distance(ref, seed=seed, checkpoint=checkpoint)
    if not h > 0:
        raise ValueError("the reference frames are all identical: the median distance is 0, give a bandwidth")
    how = "median pairwise L2 distance of the reference frames"
    if used < len(ref):
        how += f" (seeded subsample of {used} of {len(ref)} frames)"
    return h, how, used


def _as_frames(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return np.ascontiguousarray(x if x.dtype in (np.float32, np.float64) else x.astype(np.float64))


@dataclass(frozen=True, eq=False)
class KernelReference:
    """The reference side of KAD: what a job against a cached reference need not recompute.

    ``frames`` are the reference frames as given (float32 stays float32), after the seeded subsample to
    ``max_frames`` if any; ``shift`` their float64 mean. The reference term and bandwidth are those of
    ``KernelTerms`` built from the same inputs, computed by the same code."""

    frames: np.ndarray
    shift: np.ndarray
    bandwidth: float
    source: str  # "given" or how the median was taken
    median_points: int | None
    within_sum: float  # sum_{i != j} k(r_i, r_j)
    block_size: int
    seed: int
    max_frames: int | None
    subsampled_from: int | None  # reference frames before the subsample (None: all kept)
    backend: str

    @property
    def n(self) -> int:
        return len(self.frames)

    @property
    def gamma(self) -> float:
        return 1.0 / (2.0 * self.bandwidth**2)

    @property
    def ref_term(self) -> float:
        return self.within_sum / (self.n * (self.n - 1))

    def shifted(self) -> np.ndarray:
        x = self.frames.astype(np.float64)  # a copy even when float64: subtract in place
        x -= self.shift
        return x

    @classmethod
    def of(cls, ref: np.ndarray, bandwidth: float | None = None, seed: int = 0, block_size: int = DEFAULT_BLOCK,
           max_frames: int | None = None, device: str | None = None, checkpoint: Checkpoint = None
           ) -> KernelReference:
        if max_frames is not None and 0 < max_frames < 2:
            raise ValueError(f"max_frames must be 0 (no cap) or at least 2, got {max_frames}")
        frames = _as_frames(ref)
        if frames.ndim != 2 or len(frames) < 2:
            raise ValueError("KAD needs at least 2 frames in each set")
        idx = subsample_rows(len(frames), max_frames, seed, 0)
        subsampled_from = None if idx is None else len(frames)
        if idx is not None:
            frames = frames[idx]
        x = frames.astype(np.float64)
        h, source, used = _bandwidth(x, bandwidth, seed, block_size, checkpoint)
        shift = x.mean(axis=0)
        x -= shift
        be = backend_for(device)
        within = _within_sum(be, x, 1.0 / (2.0 * h**2), int(block_size), checkpoint)
        return cls(frames, shift, h, source, used, within, int(block_size), int(seed), max_frames or None,
                   subsampled_from, be.name)

    def check(self, bandwidth: float | None, seed: int, block_size: int, max_frames: int | None) -> None:
        """Raise ValueError unless this reference is what ``of`` would build with these options."""
        same_bandwidth = (self.source == "given" and self.bandwidth == bandwidth) if bandwidth is not None \
            else (self.source != "given" and self.seed == seed)
        if not same_bandwidth or self.block_size != block_size or (self.max_frames or None) != (max_frames or None) \
                or (self.subsampled_from is not None and self.seed != seed):
            raise ValueError("the cached KAD reference was built with other options (bandwidth, seed, block size "
                             "or max_frames)")

    def fingerprint(self) -> str:
        """blake2b of the frames (dtype, shape, bytes): ties the cached terms to the frames they came from."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.frames.dtype.str}{self.frames.shape}".encode())
        h.update(np.ascontiguousarray(self.frames).tobytes())
        return h.hexdigest()

    def to_bytes(self, include_frames: bool = True) -> bytes:
        """npz bytes (no pickle). Without the frames they are small (the terms and the shift); ``from_bytes``
        then needs the reference frames again and checks them against the stored fingerprint."""
        buf = io.BytesIO()
        frames = {"frames": self.frames} if include_frames else {}
        np.savez(buf, format=np.int64(_FORMAT), shift=self.shift, fingerprint=np.str_(self.fingerprint()),
                 n=np.int64(self.n), bandwidth=np.float64(self.bandwidth), source=np.str_(self.source),
                 median_points=np.int64(-1 if self.median_points is None else self.median_points),
                 within_sum=np.float64(self.within_sum), block_size=np.int64(self.block_size),
                 seed=np.int64(self.seed), max_frames=np.int64(self.max_frames or 0),
                 subsampled_from=np.int64(-1 if self.subsampled_from is None else self.subsampled_from),
                 backend=np.str_(self.backend), **frames)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, frames: np.ndarray | None = None, verify: bool = True) -> KernelReference:
        """``frames``: the full reference frames, needed when the bytes were written without them. ``verify``
        False skips the fingerprint of ``frames`` (a blake2b pass over them, ~28 ms at 7,000 x 1024): only for a
        caller whose cache keys already prove these are the frames the terms were built from."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if int(z["format"]) != _FORMAT:
                raise ValueError(f"unknown KernelReference format {int(z['format'])}")
            median, sub, seed = int(z["median_points"]), int(z["subsampled_from"]), int(z["seed"])
            if "frames" in z:
                kept = z["frames"].copy()
            elif frames is None:
                raise ValueError("this KernelReference was stored without its frames: pass the reference frames")
            else:
                kept = _as_frames(frames)
                idx = subsample_rows(len(kept), int(z["max_frames"]) or None, seed, 0)
                kept = kept[idx] if idx is not None else kept
            out = cls(kept, z["shift"].copy(), float(z["bandwidth"]), str(z["source"]),
                      None if median < 0 else median, float(z["within_sum"]), int(z["block_size"]), seed,
                      int(z["max_frames"]) or None, None if sub < 0 else sub, str(z["backend"]))
            if "frames" not in z and len(kept) != int(z["n"]):
                raise ValueError("the reference frames are not those the cached KAD reference was built from")
            if verify and out.fingerprint() != str(z["fingerprint"]):
                raise ValueError("the reference frames are not those the cached KAD reference was built from")
            return out


class KernelTerms:
    """The reference and cross kernel sums of one (reference, candidate files) pair, reusable for resamples.

    ``reference``: a (cached) :class:`KernelReference` of this reference, used instead of ``ref`` (which may
    then be None). ``max_frames``: each set is cut to a seeded subsample of that many frames (0/None: all).
    ``device``: see :func:`backend_for` (None: numpy). ``checkpoint`` is called between kernel blocks."""

    def __init__(self, ref: np.ndarray | None, files: Sequence[np.ndarray], bandwidth: float | None = None,
                 scale: float = 100.0, block_size: int = DEFAULT_BLOCK, seed: int = 0, *,
                 reference: KernelReference | None = None, device: str | None = None,
                 max_frames: int | None = None, checkpoint: Checkpoint = None) -> None:
        arrays = [np.atleast_2d(np.asarray(f)) for f in files]
        if sum(len(a) for a in arrays) < 2:
            raise ValueError("KAD needs at least 2 frames in each set")
        self._be = backend_for(device)
        if reference is not None:
            reference.check(bandwidth, seed, block_size, max_frames)
            if reference.backend != self._be.name:
                raise ValueError(f"the cached KAD reference was computed with {reference.backend}, this job runs "
                                 f"{self._be.name}: the sums would differ in the last bits")
        else:
            if ref is None:
                raise ValueError("KAD needs the reference frames or a KernelReference")
            reference = KernelReference.of(ref, bandwidth, seed, block_size, max_frames, device, checkpoint)
        self.reference, self.checkpoint = reference, checkpoint
        self.bandwidth, self.source, self.median_points = reference.bandwidth, reference.source, reference.median_points
        self.scale, self.block, self.seed = float(scale), int(block_size), int(seed)
        self.gamma = reference.gamma
        cand = np.concatenate(arrays)  # in the files' dtype; float64 below, once
        frame_file = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
        idx = subsample_rows(len(cand), max_frames, seed, 1)
        self.cand_subsampled_from = None if idx is None else len(cand)
        if idx is not None:
            cand, frame_file = cand[idx], frame_file[idx]
        self.frame_file = frame_file
        self.counts = np.bincount(frame_file, minlength=len(arrays)).astype(np.float64)
        self.ref = reference.shifted()
        self.cand = cand.astype(np.float64)
        self.cand -= reference.shift
        self.ref_term = reference.ref_term
        self.cross = _cross_column_sums(self._be, self.ref, self.cand, self.gamma, self.block, checkpoint)
        self._per_file_cross = np.bincount(frame_file, weights=self.cross, minlength=len(arrays))

    @property
    def backend(self) -> str:
        return self._be.name

    def _mmd2_blocks(self, blocks: Sequence[np.ndarray]) -> list[np.ndarray]:
        groups = any(bool((w * (w - 1.0)).any()) for w in blocks)
        qs, within_file = _within_weighted(self._be, self.cand, self.frame_file, blocks, len(self.counts),
                                           self.gamma, self.block, groups, self.checkpoint)
        out = []
        for w, q in zip(blocks, qs, strict=True):
            dup = w * (w - 1.0)
            if within_file is not None:
                q = q - dup @ within_file
            n_w = w @ self.counts
            pairs = n_w * (n_w - 1.0) - dup @ (self.counts**2)
            cross = (w @ self._per_file_cross) / (len(self.ref) * n_w)
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(self.ref_term + q / pairs - 2.0 * cross)
        return out

    def mmd2(self, weights: np.ndarray) -> np.ndarray:
        """Unbiased MMD^2 for each row of file multiplicities ``weights`` [B, F], in one blockwise pass.

        Pairs of frames from two copies of the same resampled file are left out of the candidate term (they
        would add k(x, x) = 1 terms and bias a resample upward by ~1/F); with all weights 1 this is exactly
        the unbiased estimator."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        blocks = [weights[i:i + RESAMPLE_BLOCK] for i in range(0, len(weights), RESAMPLE_BLOCK)]
        return np.concatenate(self._mmd2_blocks(blocks)) if blocks else np.zeros(0)

    def point_and_resamples(self, weights: np.ndarray | None) -> tuple[float, np.ndarray | None]:
        """MMD^2 of the full set and of each resample, sharing one pass over the candidate kernel. The full set
        is its own block, so its value does not depend on how many resamples come with it."""
        blocks = [np.ones((1, len(self.counts)))]
        if weights is not None:
            weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
            blocks += [weights[i:i + RESAMPLE_BLOCK] for i in range(0, len(weights), RESAMPLE_BLOCK)]
        values = self._mmd2_blocks(blocks)
        return float(values[0][0]), (None if weights is None else np.concatenate([np.zeros(0), *values[1:]]))

    def subsampled_from(self) -> dict | None:
        ref_from = self.reference.subsampled_from
        if ref_from is None and self.cand_subsampled_from is None:
            return None
        return {"reference": ref_from, "candidate": self.cand_subsampled_from, "seed": self.seed,
                "max_frames": self.reference.max_frames}

    def result(self, mmd2: float | None = None) -> KadResult:
        mmd2 = self.point_and_resamples(None)[0] if mmd2 is None else mmd2
        return KadResult(self.scale * mmd2, mmd2, self.bandwidth, self.scale, self.source, self.median_points,
                         self.subsampled_from(), self.backend)


def kernel_audio_distance(ref: np.ndarray, cand: np.ndarray | Sequence[np.ndarray], bandwidth: float | None = None,
                          scale: float = 100.0, block_size: int = DEFAULT_BLOCK, seed: int = 0, *,
                          device: str | None = None, max_frames: int | None = None) -> KadResult:
    """KAD between reference frames and candidate frames (an array, or one array per file).

    Default bandwidth: median pairwise L2 distance of the reference set, so that every candidate scored against
    one reference is measured with the same kernel (and the reference term can be cached)."""
    files = [cand] if isinstance(cand, np.ndarray) and cand.ndim == 2 else list(cand)
    return KernelTerms(ref, files, bandwidth, scale, block_size, seed, device=device, max_frames=max_frames).result()
