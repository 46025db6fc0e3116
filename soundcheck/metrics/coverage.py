"""Mode coverage and fidelity in embedding space: NDB/JSD (Richardson & Weiss, NeurIPS 2018) and
precision/recall/density/coverage (Kynkäänniemi et al. 2019; Naeem et al., ICML 2020)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import rel_entr
from scipy.stats import norm
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances_argmin, pairwise_distances_chunked

WHITEN_EPS = 1e-6
#: Memory per chunk of pairwise distances (MiB), see sklearn's ``working_memory``.
WORKING_MEMORY_MB = 256
#: Bootstrap resamples scored together (memory ~ reference samples x this, independent of B).
RESAMPLE_BLOCK = 256
_FORMAT = 1

Checkpoint = Callable[[], None] | None


def _call(checkpoint: Checkpoint) -> None:
    if checkpoint is not None:
        checkpoint()


def _same_clustering(labels: np.ndarray, best: np.ndarray, k: int) -> bool:
    """sklearn's ``_is_same_clustering``: every label of ``labels`` maps to a single label of ``best``."""
    pairs = np.unique(labels.astype(np.int64) * k + best)
    return len(pairs) == len(np.unique(labels))


@dataclass(frozen=True)
class NdbResult:
    ndb: int
    k: int
    different_bins: list[int]  # bin indices (bins ordered by decreasing reference size)
    reference_proportions: np.ndarray
    candidate_proportions: np.ndarray
    standard_errors: np.ndarray
    z: np.ndarray
    p_values: np.ndarray
    jsd_nats: float
    alpha: float
    z_threshold: float | None
    n_reference: int
    n_candidate: int

    @property
    def ndb_over_k(self) -> float:
        return self.ndb / self.k

    @property
    def jsd_bits(self) -> float:
        return self.jsd_nats / np.log(2.0)


def two_proportion_z_test(p1: np.ndarray, n1: int, p2: np.ndarray, n2: int) -> tuple[np.ndarray, ...]:
    """Pooled two-proportion z-test per bin: (standard error, z, two-tailed p-value)."""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p1 - p2) / se, 0.0)
    return se, z, 2.0 * norm.cdf(-np.abs(z))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2, in nats (0 <= JSD <= ln 2).

    Written as 0.5 sum p ln(2p / (p + q)) + (same for q): (p + q) / 2 would underflow to 0 for denormal
    entries and turn the sum into infinity."""
    total = p + q
    value = 0.5 * (rel_entr(p, total).sum() + rel_entr(q, total).sum() + np.log(2.0) * (p.sum() + q.sum()))
    return float(min(max(value, 0.0), np.log(2.0)))


class NdbBins:
    """K-means bins of a reference set (metrics.md NDB steps 1-2), cacheable as bytes (npz, no pickle)."""

    def __init__(self, centers: np.ndarray, proportions: np.ndarray, n_reference: int,
                 mean: np.ndarray | None, std: np.ndarray | None, seed: int) -> None:
        self.centers, self.proportions, self.n_reference = centers, proportions, int(n_reference)
        self.mean, self.std, self.seed = mean, std, int(seed)

    @property
    def k(self) -> int:
        return len(self.centers)

    @property
    def whiten(self) -> bool:
        return self.mean is not None

    @classmethod
    def fit(cls, ref: np.ndarray, k: int = 100, whiten: bool = True, seed: int = 0, n_init: int = 3,
            max_iter: int = 100, checkpoint: Checkpoint = None) -> NdbBins:
        """K-means with ``n_init`` restarts, run as separate one-init fits so that ``checkpoint`` is called
        between them. They draw from one ``RandomState(seed)`` in turn and keep the best inertia by sklearn's
        own rule, which is what ``KMeans(n_init=n_init, random_state=seed)`` does inside: same bins."""
        x = np.asarray(ref, dtype=np.float64)
        if len(x) < k:
            raise ValueError(f"NDB with K={k} bins needs at least {k} reference frames, got {len(x)}")
        mean = std = None
        if whiten:
            mean, std = x.mean(axis=0), x.std(axis=0) + WHITEN_EPS
            x = (x - mean) / std
        state = np.random.RandomState(seed)
        km = None
        for _ in range(n_init):
            _call(checkpoint)
            fit = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=state).fit(x)
            if km is None or (fit.inertia_ < km.inertia_ and not _same_clustering(fit.labels_, km.labels_, k)):
                km = fit
        assert km is not None, "n_init must be >= 1"
        counts = np.bincount(km.labels_, minlength=k)
        order = np.argsort(-counts, kind="stable")
        return cls(km.cluster_centers_[order], counts[order] / len(x), len(x), mean, std, seed)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return (x - self.mean) / self.std if self.whiten else x

    def assign(self, samples: np.ndarray) -> np.ndarray:
        """Index of the nearest bin centre (L2) of each sample."""
        return pairwise_distances_argmin(self._transform(samples), self.centers)

    def evaluate(self, cand: np.ndarray, alpha: float = 0.05, z_threshold: float | None = None) -> NdbResult:
        labels = self.assign(cand)
        n = len(labels)
        if n == 0:
            raise ValueError("no candidate frames")
        cand_p = np.bincount(labels, minlength=self.k) / n
        se, z, p_values = two_proportion_z_test(self.proportions, self.n_reference, cand_p, n)
        different = np.abs(z) > z_threshold if z_threshold is not None else p_values < alpha
        return NdbResult(int(different.sum()), self.k, [int(i) for i in np.flatnonzero(different)],
                         self.proportions, cand_p, se, z, p_values, jensen_shannon(self.proportions, cand_p),
                         alpha, z_threshold, self.n_reference, n)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        extra = {"mean": self.mean, "std": self.std} if self.whiten else {}
        np.savez(buf, centers=self.centers, proportions=self.proportions, n_reference=np.int64(self.n_reference),
                 seed=np.int64(self.seed), **extra)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> NdbBins:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            mean = z["mean"].copy() if "mean" in z else None
            std = z["std"].copy() if "std" in z else None
            return cls(z["centers"].copy(), z["proportions"].copy(), int(z["n_reference"]), mean, std, int(z["seed"]))


def nearest_files(bins: NdbBins, samples: np.ndarray, owners: Sequence[str], bin_ids: Sequence[int],
                  n: int = 3) -> dict[int, list[str]]:
    """Per bin, the ``n`` distinct files (``owners[i]`` names sample i) whose samples lie nearest the bin's centre
    (L2, in the bins' whitened space): the sounds a reader should listen to for a bin that differs. Nearest
    among all samples, not only those assigned to the bin: a bin the candidate misses still gets the closest."""
    if not len(bin_ids) or not len(samples):
        return {int(b): [] for b in bin_ids}
    x = bins._transform(samples)
    out: dict[int, list[str]] = {}
    for b in bin_ids:
        dist = np.einsum("ij,ij->i", x - bins.centers[b], x - bins.centers[b])
        names: list[str] = []
        for i in np.argsort(dist, kind="stable"):
            if owners[i] not in names:
                names.append(owners[i])
                if len(names) == n:
                    break
        out[int(b)] = names
    return out


def ndb_jsd(ref: np.ndarray, cand: np.ndarray, k: int = 100, whiten: bool = True, alpha: float = 0.05,
            z_threshold: float | None = None, seed: int = 0) -> NdbResult:
    """NDB and JSD of candidate frames against K-means bins of the reference frames (metrics.md steps 1-6)."""
    return NdbBins.fit(ref, k=k, whiten=whiten, seed=seed).evaluate(cand, alpha=alpha, z_threshold=z_threshold)


def _kth_neighbour_radii(x: np.ndarray, k: int, checkpoint: Checkpoint = None) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (the (k+1)-th smallest distance, self included)."""
    if len(x) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} frames per set, got {len(x)}")

    def reduce(chunk: np.ndarray, start: int) -> np.ndarray:
        _call(checkpoint)
        return np.partition(chunk, k, axis=1)[:, k]

    parts = pairwise_distances_chunked(x, reduce_func=reduce, metric="euclidean", working_memory=WORKING_MEMORY_MB)
    return np.concatenate(list(parts))


def _as_samples(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x))
    return np.ascontiguousarray(x if x.dtype in (np.float32, np.float64) else x.astype(np.float64))


@dataclass(frozen=True, eq=False)
class PrdcReference:
    """The reference side of PRDC: the reference samples (dtype kept) and their k-NN radii per k, cacheable as
    bytes (npz, no pickle). ``PrdcTerms`` given one computes what it would compute from the samples."""

    samples: np.ndarray
    radii: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, real: np.ndarray, ks: Sequence[int] = (5,), checkpoint: Checkpoint = None) -> PrdcReference:
        samples = _as_samples(real)
        x = samples.astype(np.float64)
        return cls(samples, {int(k): _kth_neighbour_radii(x, int(k), checkpoint) for k in ks})

    def radius(self, k: int, checkpoint: Checkpoint = None) -> np.ndarray:
        """The k-NN radii (computed here when this reference was cached without them)."""
        found = self.radii.get(int(k))
        return found if found is not None else _kth_neighbour_radii(self.samples.astype(np.float64), k, checkpoint)

    def fingerprint(self) -> str:
        """blake2b of the samples (dtype, shape, bytes): ties cached radii to the samples they came from."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.samples.dtype.str}{self.samples.shape}".encode())
        h.update(np.ascontiguousarray(self.samples).tobytes())
        return h.hexdigest()

    def to_bytes(self, include_samples: bool = True) -> bytes:
        """npz bytes (no pickle). Without the samples they are small (the radii); ``from_bytes`` then needs the
        reference samples again and checks them against the stored fingerprint."""
        buf = io.BytesIO()
        ks = sorted(self.radii)
        samples = {"samples": self.samples} if include_samples else {}
        np.savez(buf, format=np.int64(_FORMAT), ks=np.array(ks, dtype=np.int64),
                 fingerprint=np.str_(self.fingerprint()), **samples, **{f"radii_{k}": self.radii[k] for k in ks})
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, samples: np.ndarray | None = None, verify: bool = True) -> PrdcReference:
        """``samples``: the reference samples, needed when the bytes were written without them. ``verify`` False
        skips their fingerprint (see ``KernelReference.from_bytes``); the radii must still match them in number."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if int(z["format"]) != _FORMAT:
                raise ValueError(f"unknown PrdcReference format {int(z['format'])}")
            if "samples" in z:
                kept = z["samples"].copy()
            elif samples is None:
                raise ValueError("this PrdcReference was stored without its samples: pass the reference samples")
            else:
                kept = _as_samples(samples)
            out = cls(kept, {int(k): z[f"radii_{int(k)}"].copy() for k in z["ks"]})
            if any(len(r) != len(kept) for r in out.radii.values()):
                raise ValueError("the reference samples are not those the cached PRDC radii were computed from")
            if verify and "fingerprint" in z and out.fingerprint() != str(z["fingerprint"]):
                raise ValueError("the reference samples are not those the cached PRDC radii were computed from")
            return out


class PrdcTerms:
    """Per-candidate-file contributions to PRDC, so the scores of any resample of files are weighted sums.

    precision and density average per-candidate-frame quantities; coverage asks, per reference frame, whether
    some candidate file holds a frame inside its k-NN ball; recall whether it lies inside some candidate
    frame's k-NN ball. Resamples keep the candidate radii of the full set (a duplicated frame would otherwise
    have a zero k-NN radius). ``reference``: a (cached) :class:`PrdcReference` used instead of ``real`` (which
    may then be None); ``checkpoint`` is called between chunks of distances.
    """

    def __init__(self, real: np.ndarray | None, fake_files: Sequence[np.ndarray], k: int = 5, *,
                 reference: PrdcReference | None = None, checkpoint: Checkpoint = None) -> None:
        if reference is None:
            if real is None:
                raise ValueError("PRDC needs the reference samples or a PrdcReference")
            reference = PrdcReference.of(real, (k,), checkpoint)
        self.reference = reference
        real = reference.samples.astype(np.float64)
        real_r = reference.radius(k, checkpoint)
        dim = real.shape[1]
        arrays = [np.asarray(f, dtype=np.float64).reshape(-1, dim) for f in fake_files]  # a file may hold 0 rows
        fake = np.concatenate(arrays)
        self.k, self.n_real = k, len(real)
        self.counts = np.array([len(a) for a in arrays], dtype=np.float64)
        frame_file = np.repeat(np.arange(len(arrays)), self.counts.astype(int))
        fake_r = _kth_neighbour_radii(fake, k, checkpoint)
        n_files = len(arrays)
        inside = np.zeros(len(fake))  # per fake frame: number of real balls that contain it
        self.recall_hits = np.zeros((len(real), n_files), dtype=bool)
        self.cover_hits = np.zeros((len(real), n_files), dtype=bool)
        present = np.flatnonzero(self.counts > 0)  # files left without frames (a subsample) have no hits
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)[present]
        every = len(present) == n_files

        def reduce(chunk: np.ndarray, start: int) -> None:
            _call(checkpoint)
            rows = slice(start, start + len(chunk))
            in_real_ball = chunk < real_r[rows, None]
            inside[:] += in_real_ball.sum(axis=0)
            for hits, mask in ((self.recall_hits, chunk < fake_r[None, :]), (self.cover_hits, in_real_ball)):
                if every:
                    np.logical_or.reduceat(mask, starts, axis=1, out=hits[rows])
                else:
                    hits[rows.start:rows.stop, present] = np.logical_or.reduceat(mask, starts, axis=1)
            return None

        for _ in pairwise_distances_chunked(real, fake, reduce_func=reduce, metric="euclidean",
                                            working_memory=WORKING_MEMORY_MB):
            pass
        self.precision_sum = np.bincount(frame_file, weights=(inside > 0).astype(float), minlength=n_files)
        self.density_sum = np.bincount(frame_file, weights=inside, minlength=n_files) / k

    def scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """precision, recall, density, coverage for each row of file multiplicities ``weights`` [B, F]; recall
        and coverage take ``RESAMPLE_BLOCK`` rows at a time (memory ~ reference samples x block)."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        n_w = weights @ self.counts
        return {
            "precision": weights @ self.precision_sum / n_w,
            "recall": self._any_present(self.recall_hits, weights),
            "density": weights @ self.density_sum / n_w,
            "coverage": self._any_present(self.cover_hits, weights),
        }

    @staticmethod
    def _any_present(hits: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Per resample: the share of reference samples with a hit in some file present in it."""
        as_float = hits.astype(np.float32)  # a 0/1 product is exact in float32 below 2^24 files
        out = np.empty(len(weights))
        for i in range(0, len(weights), RESAMPLE_BLOCK):
            present = (weights[i:i + RESAMPLE_BLOCK] > 0).astype(np.float32).T
            out[i:i + RESAMPLE_BLOCK] = ((as_float @ present) > 0).mean(axis=0)
        return out


def prdc(real: np.ndarray, fake: np.ndarray | Sequence[np.ndarray], k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage with k nearest neighbours (same definitions as the ``prdc``
    package); pairwise distances are computed in chunks of ``WORKING_MEMORY_MB``."""
    files = [fake] if isinstance(fake, np.ndarray) and fake.ndim == 2 else list(fake)
    terms = PrdcTerms(real, files, k)
    return {name: float(values[0]) for name, values in terms.scores(np.ones((1, len(files)))).items()}
