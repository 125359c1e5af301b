"""The conversion child process: no network, no new processes, names transformers expects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobs.ml.convert import ConversionError, convert_isolated, safetensors_name

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pytorch_model.bin", "model.safetensors"),
        ("pytorch_model-00001-of-00002.bin", "model-00001-of-00002.safetensors"),
        ("weights/backbone.pth", "weights/backbone.safetensors"),
        ("last.ckpt", "last.safetensors"),
    ],
)
def test_converted_files_get_the_names_loaders_look_for(path, expected):
    assert safetensors_name(path) == expected


@pytest.mark.parametrize(
    "attempt",
    [
        "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)",
        "import socket; socket.getaddrinfo('example.com', 443)",
        "import subprocess; subprocess.run(['true'])",
        "import os; os.system('true')",
    ],
)
def test_the_child_may_not_reach_the_network_or_start_processes(attempt):
    code = f"import sys; from jobs.ml.convert import _refuse; sys.addaudithook(_refuse); {attempt}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "PermissionError" in done.stderr
    assert "is not allowed while converting" in done.stderr


def test_wrapped_and_tied_state_dicts_convert(tmp_path):
    import torch
    from safetensors.torch import load_file

    shared = torch.randn(3, 2)
    torch.save({"state_dict": {"a": shared, "tied": shared}, "epoch": 4}, tmp_path / "last.ckpt")

    summary = convert_isolated(
        [("last.ckpt", tmp_path / "last.ckpt", tmp_path / "out" / "last.safetensors")],
        tmp_path,
        timeout_s=120,
        memory_bytes=8 * 2**30,
    )

    assert summary == {"last.ckpt": {"tensors": 2, "parameters": 12, "dtypes": ["float32"]}}
    written = load_file(tmp_path / "out" / "last.safetensors")
    assert torch.equal(written["a"], shared)
    assert torch.equal(written["tied"], shared)


def test_a_state_dict_with_other_values_is_refused(tmp_path):
    import torch

    torch.save({"w": torch.ones(1), "step": 3}, tmp_path / "mixed.pt")

    with pytest.raises(ConversionError, match=r"mixed\.pt is not a plain state dict: step"):
        convert_isolated(
            [("mixed.pt", tmp_path / "mixed.pt", tmp_path / "out.safetensors")],
            tmp_path,
            timeout_s=120,
            memory_bytes=8 * 2**30,
        )


def test_a_memory_cap_stops_the_child(tmp_path):
    import torch

    torch.save({"w": torch.ones(64, 1024, 1024)}, tmp_path / "big.pt")  # 256 MiB

    with pytest.raises(ConversionError, match=r"memory|failed"):
        convert_isolated(
            [("big.pt", tmp_path / "big.pt", tmp_path / "out.safetensors")],
            tmp_path,
            timeout_s=120,
            memory_bytes=700 * 2**20,
        )
    assert not (tmp_path / "out.safetensors").exists()
