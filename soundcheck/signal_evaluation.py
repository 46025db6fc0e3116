"""Paired signal metrics (SNR, SI-SDR, LSD, MCD, MR-STFT, MFCC distance) of waveform pairs: mean over pairs,
per-file values and a bootstrap interval over pairs (the embedding metrics are in :mod:`soundcheck.evaluation`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from soundcheck.evaluation import MetricInputError, _check_metrics, json_safe
from soundcheck.jobspec import SIGNAL_METRICS, MetricOptions
from soundcheck.metrics import signal as sig
from soundcheck.metrics.bootstrap import percentile_interval, resample_weights

_SIGNAL_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray, int, MetricOptions], Any]] = {
    "snr": lambda a, b, sr, o: sig.snr(a, b),
    "si_sdr": lambda a, b, sr, o: sig.si_sdr(a, b),
    "lsd": lambda a, b, sr, o: sig.log_spectral_distance(a, b),
    "mcd": lambda a, b, sr, o: sig.mel_cepstral_distortion(a, b, sr, o.mcd.alignment),
    "mrstft": lambda a, b, sr, o: sig.multi_resolution_stft_distance(a, b)["value"],
    "mfcc_distance": lambda a, b, sr, o: sig.mfcc_distance(a, b, sr),
}
_SIGNAL_UNITS = {"snr": "dB", "si_sdr": "dB", "lsd": "dB", "mcd": "dB", "mrstft": "SC + mean |ln mag| (512/1024/2048)",
                 "mfcc_distance": "dB"}


def _signal_details(metric: str, options: MetricOptions, rates: set[int]) -> dict[str, Any]:
    """What a reader needs to compare a value with a paper: the analysis and its settings."""
    if metric == "mcd":
        return {"alignment": options.mcd.alignment, "order": sig.MCD_ORDER,
                "alpha": {str(r): sig.mel_alpha(r) for r in sorted(rates)},
                "analysis": "SPTK mcep on 25 ms Hamming frames, 5 ms hop; c1..c24 compared"}
    if metric == "mfcc_distance":
        return {"analysis": "13 MFCC of 40 HTK log-mel bands, 25 ms Hann / 10 ms hop; c1..c12 compared"}
    return {}


def evaluate_signals(metrics: Sequence[str], pairs: Iterable[tuple[str, np.ndarray, np.ndarray, int]],
                     options: MetricOptions) -> dict:
    """Signal metrics of waveform pairs (name, reference, candidate, sample rate): mean over pairs, per-file
    values, and a bootstrap interval over pairs. Pairs are consumed once (may be a generator)."""
    metrics = _check_metrics(metrics, SIGNAL_METRICS, "evaluate_embeddings (embedding metrics)")
    names: list[str] = []
    values: dict[str, list[float]] = {m: [] for m in metrics}
    mismatched: list[str] = []
    rates: set[int] = set()
    for name, ref, cand, rate in pairs:
        _, _, info = sig.align_pair(ref, cand)
        names.append(name)
        rates.add(int(rate))
        if info.mismatch:
            mismatched.append(f"{name} ({info.reference_samples} vs {info.candidate_samples} samples)")
        for m in metrics:
            try:  # each metric trims the pair itself (mcd with DTW aligns the whole files instead)
                values[m].append(float(_SIGNAL_FUNCS[m](ref, cand, rate, options)))
            except sig.SignalInputError as exc:  # a limit of the metric (DTW size): the user's to fix
                raise MetricInputError(f"{m} of {name}: {exc}") from exc
    if not names:
        raise MetricInputError("signal metrics need files paired by name, and there are none")
    warnings = []
    if mismatched:
        warnings.append(f"{len(mismatched)} pairs differ in length by more than 1% and were trimmed to the shorter: "
                        + ", ".join(mismatched[:10]) + (" ..." if len(mismatched) > 10 else "")
                        + (" (mcd with alignment 'dtw' aligned the whole files)"
                           if "mcd" in metrics and options.mcd.alignment == "dtw" else ""))
    weights = resample_weights(len(names), options.bootstrap, options.seed) if options.bootstrap else None
    results = {}
    for m in metrics:
        v = np.array(values[m])
        ok = np.isfinite(v)
        if not ok.all():
            warnings.append(f"{m}: {int((~ok).sum())} pairs have no value (silent reference) and are left out")
        boot = None
        if weights is not None and ok.any():
            w = weights[:, ok]
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = (w @ v[ok]) / w.sum(axis=1)
        point = float(v[ok].mean()) if ok.any() else None
        interval = percentile_interval(boot, options.confidence, point) if boot is not None else None
        results[m] = {"value": point, "unit": _SIGNAL_UNITS[m],
                      "interval": interval.as_dict() if interval else None, "n_reference": len(names),
                      "n_candidate": len(names), "n_pairs": len(names), **_signal_details(m, options, rates),
                      "per_file": [{"name": n, "value": x} for n, x in zip(names, v, strict=True)]}
    return json_safe({"metrics": results, "diagnostics": {"pairs": len(names), "length_mismatches": len(mismatched)},
                      "warnings": warnings})
