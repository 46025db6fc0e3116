"""laion_clap 1.1.7 built offline with random weights: the reference of the CLAP parity tests.

``import laion_clap`` cannot be used here: its ``training.data`` module calls ``BertTokenizer.from_pretrained``
(and RoBERTa's, BART's) at import time, which goes to the Hugging Face hub and hangs offline in retries. So the
package's own modules are imported the way laion_clap imports them itself (its directory on ``sys.path``,
``clap_module`` and ``training.data`` as top-level packages) with those three tokenizer loaders replaced by
stubs during the import (the tokenizers they would build are not used by the functions we call), and
``RobertaModel.from_pretrained('roberta-base')`` (the CLAP text branch) replaced by ``RobertaModel`` built
from roberta-base's configuration with random weights. The test tokenizer is transformers' ``RobertaTokenizer``
over a small byte-level BPE vocabulary written by the test: the real roberta-base vocabulary is not here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from unittest import mock

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROBERTA_BASE = {"vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1,
                "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5, "hidden_size": 768,
                "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def laion_modules() -> tuple[ModuleType, ModuleType]:
    """(``clap_module``, ``training.data``) of the installed laion_clap, imported without the network."""
    import transformers

    root = importlib.util.find_spec("laion_clap").submodule_search_locations[0]
    if root not in sys.path:
        sys.path.insert(0, root)
    stub = staticmethod(lambda *a, **k: None)
    with mock.patch.object(transformers.BertTokenizer, "from_pretrained", stub), \
            mock.patch.object(transformers.RobertaTokenizer, "from_pretrained", stub), \
            mock.patch.object(transformers.BartTokenizer, "from_pretrained", stub):
        import clap_module
        from training import data
    return clap_module, data


_TEXT: list[torch.nn.Module] = []


def random_roberta() -> torch.nn.Module:
    """``RobertaModel`` of roberta-base's configuration with random O(1) weights, built once (it is the slow part:
    125M parameters) and copied into each CLAP built here."""
    import copy

    import transformers

    if not _TEXT:
        text = transformers.RobertaModel(transformers.RobertaConfig(**ROBERTA_BASE))
        randomise(text, seed=99)
        _TEXT.append(text)
    return copy.deepcopy(_TEXT[0])


def build_clap(clap_module: ModuleType, amodel: str, fusion: bool, seed: int) -> tuple[torch.nn.Module, dict]:
    """laion_clap's CLAP (``create_model`` as ``CLAP_Module`` calls it) with random O(1) weights, in eval mode;
    ``from_pretrained('roberta-base')`` gives the random RoBERTa instead of the hub's."""
    import transformers

    fake = staticmethod(lambda *a, **k: random_roberta())
    with mock.patch.object(transformers.RobertaModel, "from_pretrained", fake):
        kwargs = {"fusion_type": "aff_2d"} if fusion else {}
        model, cfg = clap_module.create_model(amodel, "roberta", precision="fp32", device="cpu",
                                              enable_fusion=fusion, **kwargs)
    randomise(model, seed, skip="text_branch")
    return model.eval(), cfg


def randomise(model: torch.nn.Module, seed: int, skip: str | None = None) -> None:
    """Weights that keep activations O(1) everywhere, so attention, masks and fusion weights all matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, layer in model.named_modules():
            if skip is not None and name.startswith(skip):
                continue
            if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, fan_in ** -0.5, generator=gen)
                if layer.bias is not None:
                    layer.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(layer, torch.nn.LayerNorm):
                layer.weight.uniform_(0.5, 1.5, generator=gen)
                layer.bias.uniform_(-0.2, 0.2, generator=gen)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                dB = name.endswith("bn0")  # on log-mel in dB (about -100..20)
                layer.running_mean.uniform_(-60.0 if dB else -0.5, -20.0 if dB else 0.5, generator=gen)
                layer.running_var.uniform_(100.0 if dB else 0.5, 400.0 if dB else 2.0, generator=gen)
                layer.weight.uniform_(0.5, 1.5, generator=gen)
                layer.bias.uniform_(-0.2, 0.2, generator=gen)
            elif isinstance(layer, torch.nn.Embedding):
                layer.weight.normal_(0.0, 1.0, generator=gen)
        for name, param in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                param.normal_(0.0, 0.5, generator=gen)


def save_official(model: torch.nn.Module, path: Path) -> None:
    """The published layout: ``{"epoch", "state_dict": {"module.<name>": tensor}}``, position_ids included
    (the files were saved with transformers < 4.31, which kept that buffer)."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(514)[None]
    torch.save({"epoch": 15, "state_dict": state}, path)


def byte_chars() -> list[str]:
    """GPT-2 / RoBERTa's byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def write_test_tokenizer(folder: Path, corpus: list[str], n_merges: int = 60) -> None:
    """A byte-level BPE ``vocab.json`` + ``merges.txt`` (RoBERTa's format) learnt greedily from ``corpus``."""
    chars = byte_chars()
    words = Counter()
    for text in corpus:
        for i, word in enumerate(text.split(" ")):
            encoded = "".join(chars[b] for b in ((" " if i else "") + word).encode())
            words[tuple(encoded)] += 1
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:], strict=False):
                pairs[(a, b)] += count
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        merges.append(f"{a} {b}")
        vocab.setdefault(a + b, len(vocab))
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def quantise(x: np.ndarray) -> np.ndarray:
    """The int16 round trip of laion_clap's README / fadtk / stable-audio-metrics."""
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0


def fadtk_embeddings(model: torch.nn.Module, cfg: dict, data: ModuleType, audio: np.ndarray) -> np.ndarray:
    """fadtk's ``CLAPLaionModel._get_embedding``: quantise, 10 s chunks every 1 s zero-padded, each through
    laion_clap's ``get_audio_embedding_from_data(use_tensor=True)`` path (get_audio_features + get_audio_embedding)."""
    audio = quantise(audio.reshape(1, -1)).astype(np.float32)
    sr, chunk = 48000, 480000
    out = []
    for start in range(0, audio.shape[1], sr):
        piece = audio[:, start:start + chunk]
        piece = np.pad(piece, ((0, 0), (0, chunk - piece.shape[1])))
        feats = data.get_audio_features({}, torch.from_numpy(piece[0]).float(), chunk, data_truncating="rand_trunc",
                                        data_filling="repeatpad", audio_cfg=cfg["audio_cfg"])
        with torch.no_grad():
            out.append(model.get_audio_embedding([feats]).numpy())
    return np.concatenate(out)


def stable_audio_embedding(model: torch.nn.Module, cfg: dict, data: ModuleType, audio: np.ndarray) -> np.ndarray:
    """stable-audio-metrics' ``clap_score`` audio side: peak -1 dBFS (pyloudnorm's formula), quantise,
    ``get_audio_embedding_from_data`` (fusion, repeatpad) - with laion_clap's random chunk starts made the middle
    of each third, the deterministic choice soundcheck documents."""
    peak = np.abs(audio).max()
    gain = 10.0 ** ((-1.0 - 20.0 * np.log10(peak)) / 20.0)
    wave = torch.from_numpy(quantise(audio * gain).astype(np.float32))

    def middle(options):
        options = list(options)
        return options[(len(options) - 1) // 2]

    with mock.patch.object(data.np.random, "choice", middle), mock.patch.object(data.np.random, "randint",
                                                                                lambda lo, hi: 0):
        feats = data.get_audio_features({}, wave, 480000, data_truncating="fusion", data_filling="repeatpad",
                                        audio_cfg=cfg["audio_cfg"])
    with torch.no_grad():
        return model.get_audio_embedding([feats]).numpy()[0]


def text_embeddings(model: torch.nn.Module, tokenizer, texts: list[str]) -> np.ndarray:
    """``CLAP_Module.get_text_embedding``: tokenizer(padding max_length 77, truncation) -> get_text_embedding."""
    tokens = tokenizer(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        return model.get_text_embedding(dict(tokens)).numpy()
