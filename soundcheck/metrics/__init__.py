"""Metric maths: pure functions on arrays (no IO, no Redis), float64 accumulation. One module per family."""

from soundcheck.metrics.bootstrap import (
    Interval,
    bootstrap_interval,
    bootstrap_weighted,
    percentile_interval,
    resample_indices,
    resample_weights,
)
from soundcheck.metrics.classifier import classification_accuracy, inception_score, linear_probe, paired_kl
from soundcheck.metrics.coverage import NdbBins, NdbResult, PrdcTerms, ndb_jsd, prdc
from soundcheck.metrics.diagnostics import covariance_diagnostics, frechet_diagnostics
from soundcheck.metrics.frechet import (
    FadInfResult,
    FileGaussians,
    FrechetReference,
    GaussianStats,
    fad_inf,
    fad_per_file,
    frechet_distance,
    trace_sqrt_product,
)
from soundcheck.metrics.kernel import KadResult, KernelTerms, kernel_audio_distance, median_pairwise_distance
from soundcheck.metrics.signal import (
    align_pair,
    log_spectral_distance,
    mel_cepstral_distortion,
    mfcc_distance,
    multi_resolution_stft_distance,
    si_sdr,
    snr,
)

__all__ = [
    "FadInfResult", "FileGaussians", "FrechetReference", "GaussianStats", "Interval", "KadResult", "KernelTerms",
    "NdbBins", "NdbResult", "PrdcTerms", "align_pair", "bootstrap_interval", "bootstrap_weighted",
    "classification_accuracy", "covariance_diagnostics", "fad_inf", "fad_per_file", "frechet_diagnostics",
    "frechet_distance", "inception_score", "kernel_audio_distance", "linear_probe", "log_spectral_distance",
    "median_pairwise_distance", "mel_cepstral_distortion", "mfcc_distance", "multi_resolution_stft_distance",
    "ndb_jsd",
    "paired_kl", "percentile_interval", "prdc", "resample_indices", "resample_weights", "si_sdr", "snr",
    "trace_sqrt_product",
]
