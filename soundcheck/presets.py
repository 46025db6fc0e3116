"""Evaluation presets: a published protocol in one word (``"preset": "audioldm"``).

A preset fixes the models, the front end each model variant carries (sample rate, framing, padding, channel
handling, activation), and the exact metric definitions, so that its numbers can sit in a table next to the
peer's. Where soundcheck's own default differs, the preset follows the peer; ``differences`` says so point by
point and ``not_reproduced`` says where soundcheck cannot follow the peer exactly (and why). Pure data: the
worker runs one ordinary evaluation per preset metric (:mod:`worker.preset_job`).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

PresetName = Literal["audioldm", "stable-audio", "fadtk"]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)


class PresetMetric(BaseModel):
    """One number of the peer's table: which metric, on which model, with which fixed options."""

    label: str = Field(description="Key of this number in the result's metrics (e.g. 'fd_panns').")
    title: str = Field(description="How papers name it (e.g. 'FD (PANNs)').")
    metric: str = Field(description="The soundcheck metric that computes it.")
    embedding: str = Field(description="The model variant (GET /v1/models) whose front end follows the peer.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Metric options the preset fixes (merged over the job's options).")


class Preset(BaseModel):
    name: str
    title: str
    follows: str = Field(description="The peer implementation and version the preset reproduces.")
    metrics: list[PresetMetric]
    choices: dict[str, str] = Field(description="Every choice the preset fixes, in words.")
    differences: list[str] = Field(description="Where soundcheck's default differs and the preset follows the peer.")
    not_reproduced: list[str] = Field(default_factory=list,
                                      description="Where soundcheck cannot follow the peer exactly, and why.")

    def embeddings(self) -> list[str]:
        return list(dict.fromkeys(m.embedding for m in self.metrics))


_AUDIOLDM_KL = {"pooling": "mean_probabilities", "direction": "reference_candidate"}

PRESETS: dict[str, Preset] = {
    "audioldm": Preset(
        name="audioldm", title="AudioLDM evaluation (FAD, FD, KL, IS)",
        follows="audioldm_eval (haoheliu/audioldm_eval, EvaluationHelper(16000)), as in AudioLDM / AudioLDM 2",
        metrics=[
            PresetMetric(label="fad_vggish", title="FAD (VGGish)", metric="fad", embedding="vggish-noact"),
            PresetMetric(label="fd_panns", title="FD (PANNs)", metric="fad", embedding="cnn14-16k"),
            PresetMetric(label="kl_softmax", title="KL (softmax)", metric="kl", embedding="cnn14-16k",
                         options={"kl": {"activation": "softmax", **_AUDIOLDM_KL}}),
            PresetMetric(label="kl_sigmoid", title="KL (sigmoid)", metric="kl", embedding="cnn14-16k",
                         options={"kl": {"activation": "sigmoid", **_AUDIOLDM_KL}}),
            PresetMetric(label="is_panns", title="IS (PANNs)", metric="is", embedding="cnn14-16k",
                         options={"seed": 2020, "is": {"splits": 10, "activation": "softmax",
                                                       "shuffle": "randomstate"}}),
        ],
        choices={
            "sample rate": "16 kHz for every model",
            "FAD model": "VGGish (torchvggish weights) without the final ReLU, no PCA (use_activation=False, "
                         "use_pca=False), one 128-d vector per 0.96 s example",
            "FD model": "PANNs CNN14 16 kHz (Cnn14_16k_mAP=0.438.pth): one 2048-d vector per whole file",
            "padding": "files shorter than 2 s zero-padded to 2 s (pad_short_audio) before CNN14",
            "KL": "softmax (KL) or raw sigmoid (KL_Sigmoid) of CNN14's logits; KL(p_ref || p_cand + 1e-6) summed "
                  "over classes, mean over files paired by name",
            "IS": "softmax of CNN14's logits, 10 splits, files shuffled by numpy RandomState(2020)",
        },
        differences=[
            "FAD on VGGish: no final ReLU (soundcheck's `vggish` keeps torchvggish's ReLU)",
            "FD on PANNs: the 16 kHz CNN14 on whole files (soundcheck's `cnn14` is the 32 kHz one on 10 s "
            "segments)",
            "KL and IS: softmax over logits (soundcheck's default: the model's sigmoid probabilities normalised "
            "per frame)",
            "IS shuffle: RandomState(2020) (soundcheck's default: numpy Generator with options.seed)",
        ],
        not_reproduced=[
            "resampler: soundcheck resamples with soxr (HQ) everywhere; audioldm_eval uses "
            "torchaudio.functional.resample for CNN14 and resampy inside torchvggish",
            "channels: soundcheck averages channels; audioldm_eval takes the first channel and removes its mean "
            "(DC) before CNN14",
        ],
    ),
    "stable-audio": Preset(
        name="stable-audio", title="Stable Audio evaluation (FD OpenL3, KL PaSST, CLAP score)",
        follows="stable-audio-metrics (Stability-AI/stable-audio-metrics: openl3_fd, passt_kld, clap_score)",
        metrics=[
            PresetMetric(label="fd_openl3", title="FD (OpenL3)", metric="fad",
                         embedding="openl3-mel256-music-512-stable-audio"),
            PresetMetric(label="kl_passt", title="KL (PaSST)", metric="kl", embedding="passt-stable-audio",
                         options={"kl": {"definition": "stable-audio-metrics"}}),
            PresetMetric(label="clap_score", title="CLAP score", metric="clap_score",
                         embedding="clap-laion-audio-fusion"),
        ],
        choices={
            "FD model": "OpenL3 mel256 music 512, 48 kHz, stereo as [L | R] (1024-d), 1 s windows, hop 0.5 s, "
                        "peak-normalised to -1 dBFS",
            "KL model": "PaSST passt_s_swa_p16_128_ap476, 32 kHz, peak-normalised to -1 dBFS, 10 s windows every "
                        "5 s (passt-stable-audio)",
            "KL": "softmax of the mean window logits; KL(p_cand || p_ref + 1e-6), mean over files paired by name",
            "resampler": "soxr HQ, as librosa.load's default (res_type soxr_hq) in stable-audio-metrics",
            "CLAP score": "LAION-CLAP 630k-audioset-fusion-best.pt; cosine between each file's audio embedding "
                          "and its caption's text embedding, mean over captioned files",
        },
        differences=[
            "KL direction: KL(p_cand || p_ref + eps) (soundcheck's and audioldm_eval's: KL(p_ref || p_cand + eps))",
            "KL pooling: softmax of the mean logits over windows (soundcheck's default: the mean of per-frame "
            "probabilities)",
            "FD on OpenL3: stereo [L | R] with hop 0.5 s (soundcheck's openl3 ids: channels averaged, hop 0.1 s)",
        ],
        not_reproduced=[
            "channels for PaSST and CLAP: soundcheck averages channels, as librosa.load(mono=True) does",
        ],
    ),
    "fadtk": Preset(
        name="fadtk", title="fadtk FAD on CLAP-LAION audio (+ per-song FAD)",
        follows="fadtk (microsoft/fadtk, model clap-laion-audio)",
        metrics=[
            PresetMetric(label="fad", title="FAD (clap-laion-audio)", metric="fad", embedding="clap-laion-audio"),
            PresetMetric(label="fad_per_song", title="Per-song FAD", metric="fad_per_file",
                         embedding="clap-laion-audio"),
        ],
        choices={
            "model": "LAION-CLAP 630k-audioset-best.pt (HTSAT-tiny, no fusion), 48 kHz mono",
            "framing": "10 s windows every 1 s, the last ones zero-padded, one 512-d vector per window",
            "quantisation": "audio clipped to [-1, 1] and quantised to int16 before the model (x 32767)",
            "FAD": "Fréchet distance of the window embeddings' Gaussians; per-song FAD: each file's windows "
                   "against the reference statistics",
        },
        differences=[
            "per-song FAD is soundcheck's fad_per_file with the same definition (fadtk score_individual)",
        ],
        not_reproduced=[
            "resampler: fadtk converts with sox to 16-bit WAV at 48 kHz (sox rate, dither); soundcheck "
            "resamples with soxr (HQ) without the 16-bit file round trip",
        ],
    ),
}


def get_preset(name: str) -> Preset:
    return PRESETS[name]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def part_specs(spec: Any) -> list[tuple[PresetMetric, Any]]:
    """The ordinary job of each number of ``spec``'s preset: its embedding, its one metric, and the job's
    options with the preset's fixed ones merged over them (``spec`` is a JobCreate with ``preset`` set)."""
    from soundcheck.jobspec import METRIC_NAMES, JobCreate

    preset = PRESETS[spec.preset]
    missing = sorted({pm.metric for pm in preset.metrics} - set(METRIC_NAMES))
    if missing:
        raise ValueError(f"preset {preset.name!r} needs metric(s) {', '.join(missing)}, which this soundcheck "
                         "version does not have")
    base = spec.options.model_dump(mode="json", by_alias=True)
    return [(pm, JobCreate(reference=spec.reference, candidate=spec.candidate, embedding=pm.embedding,
                           metrics=[pm.metric], options=_merge(base, pm.options)))
            for pm in preset.metrics]
