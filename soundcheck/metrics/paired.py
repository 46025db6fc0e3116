"""Paired comparison of candidates scored against one reference: difference, bootstrap interval, permutation
p-value. Pure float64 maths on replicates; the replicates come from the metric code (``FileGaussians.fad``,
``KernelTerms``) called with the 0/1 or multiplicity weights of ``resample_plan`` and ``permutation_plan``.

Why the reference is held fixed: every candidate is scored against the same reference statistics (the cached
ones the evaluation jobs use), so each resample of the comparison applies the *same* reference to every
candidate and the question answered is "is B closer to this reference than A" -- the same conditioning as the
intervals of a single evaluation (docs/metrics-reference.md). Candidates with the same file names (the same
prompts) are resampled with the same file indices, so a prompt's difficulty, shared by both systems, cancels
in the difference; candidates without shared names get independent resamples.

The difference D = metric(B) - metric(A) has the basic bootstrap interval [2 D - q_high, 2 D - q_low] of its
replicates D*_b (FAD's interval; for an unbiased metric it is the percentile interval mirrored about D).

The p-value (of H0: A and B drawn from one distribution) is a permutation test: D is recomputed for P
relabellings of the two sets' files -- pairs swapped at random when the sets share file names (a sign flip),
else the pooled files split at random into sets of the original sizes -- and

    p = (1 + #{|D_pi| >= |D|}) / (P + 1)

(two-sided; Phipson & Smyth 2010 for the +1). Under H0 every relabelling is as likely as the observed labels,
so p is uniform up to its resolution 1/(P+1) at any set size, metric bias and dimension: calibrated by
construction. The bootstrap alternative, p = 2 min(1 + #{T >= D}, 1 + #{T <= D}) / (B + 1) with T = D* - D
(``p_value``; the p-value of the basic interval), is only asymptotically calibrated (it assumes the bootstrap
spread of D is its sampling spread, which FAD's nonlinear covariance term does not promise at small sizes); it
is kept for the record and the simulation (docs/metrics-reference.md has both measured). The price of
exactness: the permutation p-value and the bootstrap interval may disagree near the boundary (p just under
alpha with 0 just inside the interval); the sentence names a winner by the p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

INTERVAL_METHOD = "basic bootstrap of the paired difference"
P_VALUE_METHOD = ("two-sided: 2 min(1 + #{T >= D}, 1 + #{T <= D}) / (B + 1), T = D* - D "
                  "(replicates of the difference centred under H0)")
PERMUTATION_METHOD = ("two-sided permutation test: (1 + #{|D_pi| >= |D|}) / (P + 1) over P relabellings of the "
                      "two sets' files (pairs swapped at random when both sets have the same file names)")
#: How each metric is named in a sentence.
DISPLAY_NAMES = {"fad": "FAD", "kad": "KAD"}


@dataclass(frozen=True)
class Difference:
    """metric(b) - metric(a) with its bootstrap interval and p-value."""

    a_value: float
    b_value: float
    difference: float
    low: float | None
    high: float | None
    level: float
    p_value: float | None
    resamples: int
    valid: int
    bias: float | None  # mean(D*) - D
    permutations: int = 0  # relabellings behind the p-value (0: the bootstrap p-value)
    interval_method: str = INTERVAL_METHOD
    p_value_method: str = P_VALUE_METHOD

    def as_dict(self) -> dict:
        return asdict(self)


def resample_plan(names: Sequence[Sequence[str]], resamples: int, seed: int = 0
                  ) -> tuple[list[np.ndarray], list[int]]:
    """[B, F_i] file multiplicities for each candidate, and a group id per candidate.

    Candidates whose file names are the same set form one group and get the same draw, aligned by name (file
    "x.wav" has the same multiplicity in every candidate of the group, whatever order the files are in);
    each group draws from its own stream of ``seed``. Two candidates are *paired* when their groups are equal."""
    if resamples < 1:
        raise ValueError("a comparison needs at least one resample")
    keys: dict[tuple[str, ...], int] = {}
    groups = []
    for files in names:
        if not files:
            raise ValueError("a candidate set has no files")
        key = tuple(sorted(files))
        if len(set(key)) != len(key):
            key = ("\0dup", *files)  # duplicate names cannot be aligned: a group of its own
        groups.append(keys.setdefault(key, len(keys)))
    draws = {}
    for key, group in keys.items():
        n = len(key) - (1 if key[0] == "\0dup" else 0)
        rng = np.random.default_rng([seed, group])
        idx = rng.integers(0, n, size=(resamples, n))
        w = np.zeros((resamples, n))
        np.add.at(w, (np.arange(resamples)[:, None], idx), 1.0)
        draws[group] = w
    out = []
    for files, group in zip(names, groups, strict=True):
        key = next(k for k, g in keys.items() if g == group)
        if key[0] == "\0dup":
            out.append(draws[group])
        else:
            column = {name: i for i, name in enumerate(key)}
            out.append(draws[group][:, [column[f] for f in files]])
    return out, groups


def p_value(point: float, replicates: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value of H0: E[D] = 0 (module docstring); None with fewer than two finite ones."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if len(reps) < 2 or not np.isfinite(point):
        return None
    t = reps - point
    upper = 1 + np.count_nonzero(t >= point)
    lower = 1 + np.count_nonzero(t <= point)
    return float(min(1.0, 2.0 * min(upper, lower) / (len(t) + 1)))


def permutation_plan(names_a: Sequence[str], names_b: Sequence[str], permutations: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, bool]:
    """0/1 weights [P, n_a + n_b] over the pooled files (A's, then B's) of the relabelled sets A' and B'.

    Same file names (the same prompts): each pair is swapped between the sets with probability 1/2 (the sign
    flip of a paired test; pairs stay pairs). Otherwise the pooled files are split at random into sets of the
    original sizes. Under H0 (both sets drawn from one distribution, pairs exchangeable) every relabelling is
    as likely as the observed one, so the test's p-value is exactly uniform up to its resolution 1/(P+1)."""
    n_a, n_b = len(names_a), len(names_b)
    rng = np.random.default_rng([seed, 2**31 - 1])  # a stream of its own: independent of the bootstrap
    wa = np.zeros((permutations, n_a + n_b))
    paired = sorted(names_a) == sorted(names_b) and len(set(names_a)) == n_a
    if paired:
        in_b = {name: n_a + i for i, name in enumerate(names_b)}
        partner = np.array([in_b[name] for name in names_a])
        swap = rng.random((permutations, n_a)) < 0.5
        rows = np.arange(permutations)[:, None]
        wa[rows, np.where(swap, partner[None, :], np.arange(n_a)[None, :])] = 1.0
    else:
        order = np.argsort(rng.random((permutations, n_a + n_b)), axis=1)[:, :n_a]
        wa[np.arange(permutations)[:, None], order] = 1.0
    return wa, 1.0 - wa, paired


def permutation_p_value(point: float, permuted: np.ndarray) -> float | None:
    """(1 + #{|D_pi| >= |D|}) / (P + 1): two-sided, exact under exchangeability; None without finite ones."""
    perm = np.asarray(permuted, dtype=np.float64)
    perm = perm[np.isfinite(perm)]
    if len(perm) < 1 or not np.isfinite(point):
        return None
    # a relabelling equal to the observed one must count as "as extreme": compare with a round-off margin
    margin = 1e-12 * max(abs(point), 1e-300)
    return float((1 + np.count_nonzero(np.abs(perm) >= abs(point) - margin)) / (len(perm) + 1))


def paired_difference(a_point: float, b_point: float, a_reps: np.ndarray, b_reps: np.ndarray,
                      level: float = 0.95, permuted: np.ndarray | None = None) -> Difference:
    """Difference b - a of two candidates' metric, from replicates drawn with ``resample_plan``'s weights
    (row b of both arrays is the same resample of the reference side and, when paired, of the file names).
    With ``permuted`` (differences of relabelled sets, ``permutation_plan``) the p-value is the permutation
    test's; else the bootstrap p-value of the module docstring."""
    a_reps, b_reps = np.asarray(a_reps, dtype=np.float64), np.asarray(b_reps, dtype=np.float64)
    if a_reps.shape != b_reps.shape:
        raise ValueError(f"replicates differ in shape: {a_reps.shape} vs {b_reps.shape}")
    point = float(b_point) - float(a_point)
    reps = b_reps - a_reps
    finite = reps[np.isfinite(reps)]
    low = high = bias = None
    if len(finite) >= 2 and np.isfinite(point):
        tail = 100.0 * (1.0 - level) / 2.0
        q_low, q_high = np.percentile(finite, [tail, 100.0 - tail])
        low, high = float(2.0 * point - q_high), float(2.0 * point - q_low)
        bias = float(finite.mean() - point)
    if permuted is not None:
        p, how, n_perm = permutation_p_value(point, permuted), PERMUTATION_METHOD, int(np.isfinite(permuted).sum())
    else:
        p, how, n_perm = p_value(point, reps), P_VALUE_METHOD, 0
    return Difference(float(a_point), float(b_point), point, low, high, float(level), p,
                      int(len(reps)), int(len(finite)), bias, n_perm, p_value_method=how)


def _number(x: float) -> str:
    """3 significant digits (whole numbers from 1000), a real minus sign and an explicit plus: "+0.12", "−1.8"."""
    text = (f"{abs(x):.0f}" if abs(x) >= 1000 else f"{abs(x):.3g}") if x != 0 else "0"
    return ("−" if x < 0 else "+" if x > 0 else "") + text


def format_p(p: float | None, floor: float) -> str:
    """"p = 0.004"; at ``floor``, the smallest value the test can give (1/(P+1) for P permutations), "p ≤ 0.001"
    (an upper bound, not a value)."""
    if p is None:
        return "p unavailable"
    if p <= floor * (1 + 1e-9):
        return f"p ≤ {floor:.2g}"
    return f"p = {p:.2g}" if p < 0.1 else f"p = {p:.2f}"


def sentence(metric: str, a: str, b: str, diff: Difference, alpha: float | None = None) -> str:
    """The result in words: "B has lower FAD than A: −1.8 [−2.9, −0.7], p = 0.004". When the interval holds 0
    (p >= alpha) it says the difference is not significant instead of naming a winner."""
    name = DISPLAY_NAMES.get(metric, metric)
    alpha = 1.0 - diff.level if alpha is None else alpha
    numbers = _number(diff.difference)
    if diff.low is not None and diff.high is not None:
        numbers += f" [{_number(diff.low)}, {_number(diff.high)}]"
    floor = 1.0 / (diff.permutations + 1) if diff.permutations else 2.0 / (diff.valid + 1)
    numbers += f", {format_p(diff.p_value, floor)}"
    if diff.p_value is None or diff.p_value >= alpha:
        return f"{b} and {a} do not differ significantly in {name}: {numbers}"
    word = "lower" if diff.difference < 0 else "higher"
    return f"{b} has {word} {name} than {a}: {numbers}"
