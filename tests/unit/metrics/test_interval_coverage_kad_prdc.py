"""Coverage of the KAD and PRDC bootstrap intervals (the interval users get, and the alternatives) against
values known independently of our code.

Candidate files come from a Gaussian model with a per-file effect (as in test_interval_coverage); the
reference is one fixed sample (the intervals resample candidate files only, so with the reference fixed that is
what they claim to cover).
- KAD (unbiased MMD^2, Gaussian RBF, fixed bandwidth h): the truth given the reference sample R is
  mean_{i!=j} k(r_i, r_j) - 2 mean_i E k(r_i, c) + E k(c, c') with c, c' independent draws of the candidate
  frames' marginal Gaussian N(m, S): E k(r, c) = det(I + S/h^2)^-1/2 exp(-(m-r)^T (h^2 I + S)^-1 (m-r) / 2) and
  E k(c, c') = det(I + 2S/h^2)^-1/2 (closed forms of Gaussian integrals).
- PRDC (unit "file", the default: one sample per file, its mean): the truth is each score's expectation over
  candidate sets of this size, from the `prdc` package on 500 fresh sets (precision and density are
  means of per-sample terms, so that is their population value; recall and coverage depend on the set size).
BCa is scipy.stats.bootstrap(method="BCa") with the same statistic on the resampled file indices.

    PYTHONPATH=. .venv/bin/python -m tests.unit.metrics.test_interval_coverage_kad_prdc --reps 400

runs the larger simulation whose numbers docs/metrics-reference.md states and the tests below check against.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.stats
from prdc import compute_prdc

from soundcheck.metrics.bootstrap import interval_from_replicates, resample_weights
from soundcheck.metrics.coverage import PrdcTerms
from soundcheck.metrics.kernel import KernelTerms

METHODS = ("percentile", "bias-shifted", "basic", "bca")
PRDC_PARTS = ("precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class Scenario:
    dim: int = 4
    files: int = 60
    frames: int = 4
    shift: float = 0.3
    file_share: float = 0.5
    reference: int = 1000  # reference frames (KAD) or samples (PRDC)
    bandwidth: float = 2.0  # KAD's h (~ the median distance of these reference frames)
    k: int = 5  # PRDC's k

    def candidate_model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s_c = np.diag(np.linspace(1.0, 0.6, self.dim) * 1.2**2)
        return np.full(self.dim, self.shift), self.file_share * s_c, (1.0 - self.file_share) * s_c

    def reference_sample(self) -> np.ndarray:
        return np.random.default_rng(99).standard_normal((self.reference, self.dim))  # N(0, I), fixed

    def draw(self, rng: np.random.Generator) -> list[np.ndarray]:
        mu, s_u, s_e = self.candidate_model()
        effect = rng.standard_normal((self.files, 1, self.dim)) @ np.linalg.cholesky(s_u).T
        noise = rng.standard_normal((self.files, self.frames, self.dim)) @ np.linalg.cholesky(s_e).T
        return list(mu + effect + noise)


def true_mmd2(sc: Scenario) -> float:
    r = sc.reference_sample()
    mu, s_u, s_e = sc.candidate_model()
    s, h2, eye = s_u + s_e, sc.bandwidth**2, np.eye(sc.dim)
    sq = ((r[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    kr = np.exp(-sq / (2 * h2))
    ref_term = (kr.sum() - len(r)) / (len(r) * (len(r) - 1))
    diff = mu - r
    quad = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(h2 * eye + s), diff)
    cross = np.linalg.det(eye + s / h2) ** -0.5 * np.exp(-0.5 * quad).mean()
    return float(ref_term - 2.0 * cross + np.linalg.det(eye + 2.0 * s / h2) ** -0.5)


def true_prdc(sc: Scenario, sets: int = 500) -> dict[str, float]:
    ref = sc.reference_sample()
    rng = np.random.default_rng(12345)
    totals = dict.fromkeys(PRDC_PARTS, 0.0)
    for _ in range(sets):
        means = np.stack([f.mean(axis=0) for f in sc.draw(rng)])
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints the set sizes
            found = compute_prdc(real_features=ref, fake_features=means, nearest_k=sc.k)
        for part, v in found.items():
            totals[part] += v
    return {p: totals[p] / sets for p in PRDC_PARTS}


def _as_weights(idx: np.ndarray, n_files: int) -> np.ndarray:
    """Resampled file indices [..., m] -> multiplicities [rows, n_files] (scipy's resamples and jackknife)."""
    rows = idx.reshape(-1, idx.shape[-1])
    weights = np.zeros((len(rows), n_files))
    np.add.at(weights, (np.arange(len(rows))[:, None], rows), 1.0)
    return weights


def _bca(statistic, n_files: int, resamples: int, level: float, seed: int) -> tuple[float, float]:
    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.asarray(idx)
        return statistic(_as_weights(idx, n_files)).reshape(idx.shape[:-1])

    res = scipy.stats.bootstrap((np.arange(n_files),), stat, vectorized=True, n_resamples=resamples,
                                confidence_level=level, method="BCa", rng=np.random.default_rng(seed))
    return res.confidence_interval


def coverage(sc: Scenario, metric: str, reps: int, resamples: int, seed: int, level: float = 0.95,
             methods: tuple[str, ...] = METHODS) -> dict[str, dict[str, float]]:
    """Per score (``kad``, or each PRDC part): share of ``reps`` candidate sets whose interval holds the truth."""
    ref = sc.reference_sample()
    if metric == "kad":
        truth, bounds = {"kad": true_mmd2(sc)}, {"kad": (-np.inf, np.inf)}
    else:
        truth = true_prdc(sc)
        bounds = {p: ((0.0, np.inf) if p == "density" else (0.0, 1.0)) for p in PRDC_PARTS}
    hits = {s: dict.fromkeys(methods, 0) for s in truth}
    rng = np.random.default_rng(seed)
    for rep in range(reps):
        files = sc.draw(rng)
        if metric == "kad":
            terms = KernelTerms(ref, files, bandwidth=sc.bandwidth)

            def scores(w: np.ndarray, t: KernelTerms = terms) -> dict[str, np.ndarray]:
                return {"kad": t.mmd2(w)}
        else:
            terms = PrdcTerms(ref, [f.mean(axis=0)[None, :] for f in files], sc.k)

            def scores(w: np.ndarray, t: PrdcTerms = terms) -> dict[str, np.ndarray]:
                return t.scores(w)
        point = scores(np.ones((1, sc.files)))
        boot = scores(resample_weights(sc.files, resamples, seed=rep))
        for s in truth:
            for method in methods:
                if method == "bca":
                    low, high = _bca(lambda w, s=s: scores(w)[s], sc.files, resamples, level, rep)
                else:
                    ivl = interval_from_replicates(boot[s], level, float(point[s][0]), bounds[s], method)
                    low, high = (ivl.low, ivl.high) if ivl is not None else (np.nan, np.nan)
                hits[s][method] += bool(low <= truth[s] <= high)
    return {s: {m: hits[s][m] / reps for m in methods} for s in truth}


SCENARIOS = {
    "kad": (Scenario(), Scenario(files=30, frames=2, shift=0.15), Scenario(files=200, frames=1, shift=0.1)),
    "prdc": (Scenario(reference=300), Scenario(files=150, reference=300, shift=0.15),
             Scenario(dim=8, files=100, reference=400, shift=0.2)),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--metrics", nargs="*", default=["kad", "prdc"])
    parser.add_argument("--scenarios", type=int, nargs="*", help="indices into SCENARIOS[metric] (default: all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for metric in args.metrics:
        for i, sc in enumerate(SCENARIOS[metric]):
            if args.scenarios and i not in args.scenarios:
                continue
            start = time.perf_counter()
            found = coverage(sc, metric, args.reps, args.resamples, args.seed)
            for score, by in found.items():
                print(f"{metric}[{i}] {sc} {score}: " + ", ".join(f"{m} {c:.3f}" for m, c in by.items())
                      + f" ({time.perf_counter() - start:.0f} s)", flush=True)


#: Coverage established by ``main()`` (--reps 400, seed 1, B = 100) for SCENARIOS[metric][0] (2026-12-01).
ESTABLISHED: dict[str, dict[str, dict[str, float]]] = {
    "kad": {"kad": {"percentile": 0.945, "bias-shifted": 0.932, "basic": 0.927, "bca": 0.910}},
    "prdc": {"precision": {"percentile": 0.417, "bias-shifted": 0.417, "basic": 0.420, "bca": 0.398},
             "recall": {"percentile": 0.347, "bias-shifted": 0.885, "basic": 0.242, "bca": 0.000},
             "density": {"percentile": 0.907, "bias-shifted": 0.917, "basic": 0.907, "bca": 0.912},
             "coverage": {"percentile": 0.005, "bias-shifted": 0.863, "basic": 0.052, "bca": 0.000}},
}
ESTABLISHED_REPS = 400
REPS = 200


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["kad", "prdc"])
def test_interval_coverage_matches_the_larger_simulation(metric):
    """200 fresh repetitions (seed 2) reproduce each method's coverage within 3 binomial standard errors of the
    difference of two independent proportions."""
    found = coverage(SCENARIOS[metric][0], metric, REPS, 100, seed=2)
    for score, by in ESTABLISHED[metric].items():
        for method, p in by.items():
            tol = 3.0 * np.sqrt(max(p * (1.0 - p), 0.01) * (1.0 / REPS + 1.0 / ESTABLISHED_REPS))
            assert abs(found[score][method] - p) <= tol, (score, method, found[score][method], p, tol)


if __name__ == "__main__":
    main()
