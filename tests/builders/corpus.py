"""Files as attackers and ordinary repositories make them, built in memory and never loaded.

``DISGUISES`` maps a file name to a builder of bytes that run code when a
common loader opens them (each takes the path a payload would touch);
``BENIGN`` maps a name to (builder, scan status, catalogue format) for files
that must pass.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import tarfile
import zipfile
import zlib

import numpy as np
import torch
from safetensors.numpy import save as save_numpy

from tests.builders.files import Evil


def evil_pickle(marker) -> bytes:
    return pickle.dumps(Evil(f"touch {marker}"), protocol=4)


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _npy(array, **kwargs) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True, **kwargs)
    return out.getvalue()


def _object_array(marker) -> np.ndarray:
    array = np.empty(1, dtype=object)
    array[0] = Evil(f"touch {marker}")
    return array


def _hdf5(attribute: bytes) -> bytes:
    # The HDF5 signature, then a model_config attribute as Keras writes it.
    return b"\x89HDF\r\n\x1a\n" + bytes(40) + b"model_config\x00" + attribute + bytes(64)


_LAMBDA = json.dumps(
    {"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {}}]}}
).encode()


def _torch_zip_with_renamed_pickle(marker) -> bytes:
    # torch.load finds the pickle by its record name; a scanner that only
    # reads members ending in .pkl would miss this one.
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2).state_dict(), buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                dst.writestr(info.filename.replace("data.pkl", "weights"), evil_pickle(marker))
            else:
                dst.writestr(info, data)
    return out.getvalue()


DISGUISES = {
    "plain.pkl": lambda m: evil_pickle(m),
    "model.p": lambda m: evil_pickle(m),
    "model.dill": lambda m: evil_pickle(m),
    "classifier.model": lambda m: evil_pickle(m),
    "weights.dat": lambda m: evil_pickle(m),
    "net.torch": lambda m: evil_pickle(m),
    "pytorch_model.bin.1": lambda m: evil_pickle(m),
    "protocol0.bin": lambda m: pickle.dumps(Evil(f"touch {m}"), protocol=0),
    "model.zip": lambda m: zip_bytes({"inner/model.pkl": evil_pickle(m)}),
    "exported.pt2": lambda m: zip_bytes({"archive/data/weights": evil_pickle(m)}),
    "renamed.pt": _torch_zip_with_renamed_pickle,
    "arr.npy": lambda m: _npy(_object_array(m)),
    "arrays.npz": lambda m: zip_bytes({"a.npy": _npy(np.ones(3)), "b.npy": _npy(_object_array(m))}),
    "ckpt.pth.tar": lambda m: _tar({"ckpt/state.pkl": evil_pickle(m)}),
    "model.pkl.gz": lambda m: gzip.compress(evil_pickle(m)),
    "model.pkl.bz2": lambda m: bz2.compress(evil_pickle(m)),
    "model.pkl.xz": lambda m: lzma.compress(evil_pickle(m)),
    "model.sav": lambda m: zlib.compress(evil_pickle(m)),  # joblib's zlib compression
    "nested.tar": lambda m: _tar({"a.zip": zip_bytes({"b.pkl.gz": gzip.compress(evil_pickle(m))})}),
    "keras.h5": lambda m: _hdf5(_LAMBDA),
    "model.keras": lambda m: zip_bytes({"config.json": _LAMBDA, "model.weights.h5": _hdf5(b"{}")}),
    "config.json": lambda m: _LAMBDA,
}


def _st(tensors) -> bytes:
    return save_numpy(tensors)


BENIGN = {
    "model.safetensors": (lambda: _st({"w": np.ones((2, 2), np.float32)}), "clean", "safetensors"),
    "pytorch_model.bin": (lambda: torch_bytes(), "clean", "pickle"),
    "legacy.bin": (lambda: legacy_torch_bytes(), "clean", "pickle"),
    "embeddings.npy": (lambda: _npy(np.arange(6, dtype=np.float32)), "not_applicable", "other"),
    "arrays.npz": (lambda: zip_bytes({"a.npy": _npy(np.ones(3))}), "not_applicable", "other"),
    "config.json": (
        lambda: b'{"model_type": "bert", "hidden_size": 8}',
        "not_applicable",
        "config",
    ),
    "vocab.txt": (lambda: b"[PAD]\n[UNK]\nhello\n", "not_applicable", "tokenizer"),
    "labels.csv": (lambda: b"label,text\nspam,win\n", "not_applicable", "other"),
    "flax_model.msgpack": (lambda: b"\x81\xa1w\x93\x01\x02\x03", "not_applicable", "other"),
    "model.gguf": (lambda: b"GGUF\x03\x00\x00\x00" + bytes(32), "not_applicable", "other"),
    "model.onnx_data": (lambda: bytes(range(256)) * 4, "not_applicable", "other"),
    "plot.png": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(40), "not_applicable", "other"),
    "sample.wav": (lambda: b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32), "not_applicable", "other"),
    "tf_model.h5": (lambda: _hdf5(b'{"class_name": "Dense"}'), "not_applicable", "other"),
    "README.md.gz": (lambda: gzip.compress(b"# Model\n"), "not_applicable", "other"),
}


def legacy_torch_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2).state_dict(), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def torch_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(4, 3).state_dict(), buffer)
    return buffer.getvalue()
