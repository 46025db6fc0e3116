"""The text side of LAION-CLAP: RoBERTa-base (Liu et al. 2019) + CLAP's text projection, and its tokenizer.

Our own encoder with the parameter names of ``transformers``' ``RobertaModel`` (what laion_clap 1.1.7 keeps
under ``text_branch.*`` in its checkpoints): learned word, position (offset by the padding index, positions
counted over non-padding tokens only) and token-type embeddings, LayerNorm (eps 1e-5), 12 post-norm layers of
12-head self-attention and an exact-GELU feed-forward, then the pooler (tanh of a dense layer on the first
token). laion_clap takes ``pooler_output`` through ``text_projection`` (Linear, ReLU, Linear) and normalises.

The tokenizer is RoBERTa's byte-level BPE read from the model directory's ``vocab.json`` and ``merges.txt``
(the files of ``roberta-base``), run by the ``tokenizers`` library as ``RobertaTokenizer`` runs it for
laion_clap: ``<s> ... </s>``, truncated and padded with ``<pad>`` to 77 tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CONTEXT = 77  # laion_clap's tokenizer(max_length=77)
HIDDEN, LAYERS, HEADS, FFN = 768, 12, 12, 3072  # roberta-base
LN_EPS = 1e-5


class RobertaTokens:
    """Byte-level BPE of RoBERTa from ``vocab.json`` + ``merges.txt``: ids and attention mask ``[n, 77]``."""

    def __init__(self, vocab: Path, merges: Path) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

        tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        ids = {name: tok.token_to_id(name) for name in ("<s>", "</s>", "<pad>")}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"{vocab} has no {', '.join(missing)}: not RoBERTa's vocab.json")
        tok.post_processor = processors.RobertaProcessing(("</s>", ids["</s>"]), ("<s>", ids["<s>"]),
                                                          add_prefix_space=False)
        tok.enable_truncation(CONTEXT)
        tok.enable_padding(length=CONTEXT, pad_id=ids["<pad>"], pad_token="<pad>")
        self.tokenizer = tok
        self.pad_id = ids["<pad>"]

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        out = self.tokenizer.encode_batch(list(texts))
        return (np.array([e.ids for e in out], dtype=np.int64),
                np.array([e.attention_mask for e in out], dtype=np.int64))


class _Linear(nn.Module):
    """``{name}.dense`` as transformers names it."""

    def __init__(self, n_in: int, n_out: int, norm: bool) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        if norm:
            self.LayerNorm = nn.LayerNorm(n_out, eps=LN_EPS)


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self = _SelfAttention()
        self.output = _Linear(HIDDEN, HIDDEN, norm=True)


class _Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = _Attention()
        self.intermediate = _Linear(HIDDEN, FFN, norm=False)
        self.output = _Linear(FFN, HIDDEN, norm=True)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        att = self.attention.self

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, HEADS, HIDDEN // HEADS).transpose(1, 2)

        q, k, v = heads(att.query(x)), heads(att.key(x)), heads(att.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(HIDDEN // HEADS) + bias
        ctx = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, HIDDEN)
        out = self.attention.output
        x = out.LayerNorm(out.dense(ctx) + x)
        hidden = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(self.output.dense(hidden) + x)


class _Embeddings(nn.Module):
    def __init__(self, vocab: int, positions: int, pad_id: int) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.word_embeddings = nn.Embedding(vocab, HIDDEN)
        self.position_embeddings = nn.Embedding(positions, HIDDEN)
        self.token_type_embeddings = nn.Embedding(1, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        real = (ids != self.pad_id).long()
        positions = torch.cumsum(real, dim=1) * real + self.pad_id  # RoBERTa: padding keeps the padding index
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer() for _ in range(LAYERS))


class RobertaText(nn.Module):
    """Token ids + mask ``[b, 77]`` -> RoBERTa ``pooler_output`` ``[b, 768]``; names as ``RobertaModel``'s."""

    def __init__(self, vocab: int = 50265, positions: int = 514, pad_id: int = 1) -> None:
        super().__init__()
        self.embeddings = _Embeddings(vocab, positions, pad_id)
        self.encoder = _Encoder()
        self.pooler = _Linear(HIDDEN, HIDDEN, norm=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return torch.tanh(self.pooler.dense(x[:, 0]))
