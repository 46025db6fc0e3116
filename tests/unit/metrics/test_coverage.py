"""NDB/JSD (Richardson & Weiss 2018) and PRDC (Naeem et al. 2020) against the papers' demos, scipy and the
``prdc`` package."""

from __future__ import annotations

import numpy as np
import pytest
from prdc import compute_prdc
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency
from sklearn.cluster import KMeans

from soundcheck.metrics import NdbBins, coverage, ndb_jsd, prdc
from soundcheck.metrics.coverage import PrdcReference, PrdcTerms


@pytest.fixture(scope="module")
def uniform_demo():
    """The paper's demo: 10,000 reference samples from U[0,1]^100, K=100, whitening on."""
    rng = np.random.default_rng(2018)
    bins = NdbBins.fit(rng.uniform(size=(10_000, 100)), k=100, whiten=True, seed=0)
    results = {high: bins.evaluate(rng.uniform(high=high, size=(1000, 100))) for high in (1.0, 0.9, 0.75)}
    return bins, results


def test_ndb_uniform_demo_orders_candidates_like_the_paper(uniform_demo):
    _, res = uniform_demo
    # Under H0 the expected number of false positives is alpha * K = 5; 15 would be a 1e-4 binomial tail.
    assert res[1.0].ndb <= 15
    assert res[0.9].ndb > res[1.0].ndb
    assert res[0.75].ndb > res[0.9].ndb and res[0.75].ndb >= 30
    assert res[1.0].jsd_nats < res[0.9].jsd_nats < res[0.75].jsd_nats


def test_ndb_bins_are_ordered_by_decreasing_reference_size(uniform_demo):
    bins, res = uniform_demo
    assert np.all(np.diff(bins.proportions) <= 0)
    assert bins.proportions.sum() == pytest.approx(1.0)
    assert res[0.9].candidate_proportions.sum() == pytest.approx(1.0)
    assert res[0.9].ndb_over_k == res[0.9].ndb / 100
    assert res[0.9].different_bins == [int(i) for i in np.flatnonzero(res[0.9].p_values < 0.05)]


def test_ndb_z_test_equals_a_chi_square_test_on_each_bins_2x2_table(uniform_demo):
    """A pooled two-proportion z-test is the uncorrected chi-square test of the 2x2 table (z^2 = chi^2)."""
    bins, res = uniform_demo
    r = res[0.9]
    for i in (0, 17, 50, 99):
        a, b = round(r.reference_proportions[i] * r.n_reference), round(r.candidate_proportions[i] * r.n_candidate)
        table = [[a, r.n_reference - a], [b, r.n_candidate - b]]
        chi2, p, _, _ = chi2_contingency(table, correction=False)
        assert r.z[i] ** 2 == pytest.approx(chi2, rel=1e-9)
        assert r.p_values[i] == pytest.approx(p, rel=1e-9)
        assert np.sign(r.z[i]) == np.sign(r.reference_proportions[i] - r.candidate_proportions[i])


def test_ndb_jsd_equals_scipy_jensenshannon_in_nats_and_bits(uniform_demo):
    _, res = uniform_demo
    for r in res.values():
        assert r.jsd_nats == pytest.approx(jensenshannon(r.reference_proportions, r.candidate_proportions) ** 2,
                                           rel=1e-9)
        assert r.jsd_bits == pytest.approx(
            jensenshannon(r.reference_proportions, r.candidate_proportions, base=2) ** 2, rel=1e-9)
        assert 0.0 <= r.jsd_nats <= np.log(2)


def test_ndb_bins_round_trip_through_bytes(uniform_demo, rng):
    bins, _ = uniform_demo
    back = NdbBins.from_bytes(bins.to_bytes())
    cand = rng.uniform(size=(300, 100))
    a, b = bins.evaluate(cand), back.evaluate(cand)
    assert a.ndb == b.ndb and np.array_equal(a.candidate_proportions, b.candidate_proportions)
    assert back.whiten and back.k == 100 and back.seed == 0


def test_ndb_z_threshold_and_unwhitened_bins(rng):
    ref, cand = rng.standard_normal((2000, 5)), rng.standard_normal((500, 5)) + 0.3
    res = ndb_jsd(ref, cand, k=10, whiten=False, z_threshold=2.5, seed=1)
    assert res.different_bins == [int(i) for i in np.flatnonzero(np.abs(res.z) > 2.5)]
    plain = NdbBins.from_bytes(NdbBins.fit(ref, k=10, whiten=False, seed=1).to_bytes())
    assert not plain.whiten
    with pytest.raises(ValueError, match="at least 10"):
        NdbBins.fit(ref[:5], k=10)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("sizes", [(300, 200, 8), (1000, 700, 32)])
def test_prdc_equals_the_prdc_package(rng, k, sizes, capsys):
    n_real, n_fake, dim = sizes
    real = rng.standard_normal((n_real, dim))
    fake = rng.standard_normal((n_fake, dim)) * 1.1 + 0.1
    expected = compute_prdc(real, fake, k)
    capsys.readouterr()  # the package prints its sizes
    got = prdc(real, fake, k)
    for name in ("precision", "recall", "density", "coverage"):
        assert got[name] == pytest.approx(float(expected[name]), rel=1e-12), name
    files = np.array_split(fake, 37)
    assert prdc(real, files, k) == pytest.approx(got, rel=1e-12)


def test_prdc_resamples_equal_recomputation_on_restacked_files(rng, capsys):
    """Precision, density and coverage of a resample are those of the package on the restacked frames;
    recall keeps the full set's candidate radii (documented), checked by a direct computation."""
    real = rng.standard_normal((200, 6))
    files = [rng.standard_normal((int(n), 6)) + 0.2 for n in rng.integers(1, 6, size=30)]
    idx = rng.integers(0, 30, size=(2, 30))
    weights = np.stack([np.bincount(row, minlength=30) for row in idx]).astype(float)
    got = PrdcTerms(real, files, 5).scores(weights)
    fake_all = np.concatenate(files)
    d_all = np.linalg.norm(fake_all[:, None] - fake_all[None], axis=-1)
    fake_radii = np.sort(d_all, axis=1)[:, 5]
    owner = np.repeat(np.arange(30), [len(f) for f in files])
    for b, row in enumerate(idx):
        stacked = np.concatenate([files[i] for i in row])
        expected = compute_prdc(real, stacked, 5)
        for name in ("precision", "density", "coverage"):
            assert got[name][b] == pytest.approx(float(expected[name]), rel=1e-12), name
        present = np.isin(owner, row)
        d = np.linalg.norm(real[:, None] - fake_all[None, present], axis=-1)
        assert got["recall"][b] == pytest.approx((d < fake_radii[present][None]).any(axis=1).mean())
    capsys.readouterr()


@pytest.mark.slow
def test_prdc_readme_example_of_the_prdc_package():
    """README of prdc 0.2: N(0, I) 10,000 x 10,000 in 1000-d, k=5 gives precision 0.4772, recall 0.4705,
    density 1.0555, coverage 0.9735 "(may fluctuate due to randomness)". We measured that fluctuation with
    seeds 0-3 (same generator as here): precision 0.456-0.497 (sd 0.017), recall 0.474-0.486 (sd 0.005),
    density 0.912-1.070 (sd 0.066), coverage 0.956-0.974 (sd 0.008). Tolerances are 3.5 of those sd."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((10_000, 1000)).astype(np.float32)
    fake = rng.standard_normal((10_000, 1000)).astype(np.float32)
    got = prdc(real, fake, 5)
    assert got["precision"] == pytest.approx(0.4772, abs=0.06)
    assert got["recall"] == pytest.approx(0.4705, abs=0.02)
    assert got["density"] == pytest.approx(1.0555, abs=0.23)
    assert got["coverage"] == pytest.approx(0.9735, abs=0.03)


# --- reference objects, bounded resamples, checkpoints ------------------------------------------------------

def test_a_cached_prdc_reference_gives_bit_equal_scores(rng):
    real = rng.standard_normal((150, 5)).astype(np.float32)
    files = [rng.standard_normal((int(n), 5)) + 0.1 for n in rng.integers(1, 4, size=40)]
    weights = np.stack([np.bincount(row, minlength=40) for row in rng.integers(0, 40, size=(6, 40))]).astype(float)
    cold = PrdcTerms(real, files, 3).scores(weights)
    cached = PrdcReference.from_bytes(PrdcReference.of(real, (3, 5)).to_bytes())
    assert cached.samples.dtype == np.float32 and sorted(cached.radii) == [3, 5]
    warm = PrdcTerms(None, files, 3, reference=cached).scores(weights)
    for name in cold:
        assert np.array_equal(cold[name], warm[name]), name
    # a k the reference was cached without is computed from its samples
    assert PrdcTerms(None, files, 2, reference=cached).scores(weights)["recall"] == pytest.approx(
        PrdcTerms(real, files, 2).scores(weights)["recall"])


def test_prdc_reference_radii_are_the_kth_neighbour_distances(rng):
    real = rng.standard_normal((80, 4))
    ref = PrdcReference.of(real, (1, 4))
    d = np.sort(np.linalg.norm(real[:, None] - real[None], axis=-1), axis=1)
    for k in (1, 4):
        np.testing.assert_allclose(ref.radii[k], d[:, k], rtol=1e-12)


@pytest.mark.parametrize("resample_block", [1, 4])
def test_prdc_resamples_in_blocks_equal_one_block(rng, monkeypatch, resample_block):
    real = rng.standard_normal((120, 4))
    files = [rng.standard_normal((int(n), 4)) for n in rng.integers(1, 5, size=25)]
    weights = np.stack([np.bincount(row, minlength=25) for row in rng.integers(0, 25, size=(11, 25))]).astype(float)
    terms = PrdcTerms(real, files, 4)
    whole = terms.scores(weights)
    monkeypatch.setattr(coverage, "RESAMPLE_BLOCK", resample_block)
    blocked = terms.scores(weights)
    for name in whole:
        assert np.array_equal(whole[name], blocked[name]), name
    # each resample's recall and coverage, directly: is some present file's hit set for each reference sample
    for b, row in enumerate(weights):
        present = row > 0
        assert blocked["coverage"][b] == terms.cover_hits[:, present].any(axis=1).mean()
        assert blocked["recall"][b] == terms.recall_hits[:, present].any(axis=1).mean()


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_ndb_inits_as_separate_fits_equal_sklearn_n_init(seed):
    """Same centres, bit for bit, as one KMeans(n_init=3) call: the restarts draw from one RandomState."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal((400, 6)) + c for c in (0.0, 2.0, 5.0)])
    km = KMeans(n_clusters=12, n_init=3, max_iter=100, random_state=seed).fit(x)
    counts = np.bincount(km.labels_, minlength=12)
    order = np.argsort(-counts, kind="stable")
    calls = []
    bins = NdbBins.fit(x, k=12, whiten=False, seed=seed, checkpoint=lambda: calls.append(1))
    assert np.array_equal(bins.centers, km.cluster_centers_[order])
    assert np.array_equal(bins.proportions, counts[order] / len(x))
    assert len(calls) == 3


def test_a_raising_checkpoint_stops_ndb_and_prdc(rng):
    def cancel() -> None:
        raise RuntimeError("canceled")

    with pytest.raises(RuntimeError, match="canceled"):
        NdbBins.fit(rng.standard_normal((200, 3)), k=5, checkpoint=cancel)
    with pytest.raises(RuntimeError, match="canceled"):
        PrdcTerms(rng.standard_normal((50, 3)), [rng.standard_normal((40, 3))], 3, checkpoint=cancel)
