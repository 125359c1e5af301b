"""Convert torch checkpoints (pickles) to safetensors, in a process of their own.

``convert_isolated`` runs this module as a child process: a fresh interpreter
whose audit hook refuses every network call and every new process before torch
is imported, with a scrubbed environment (offline flags, no proxies, ``HOME``
in the workspace) and a memory cap. The child loads each file with
``torch.load(weights_only=True)``, torch's restricted unpickler that builds
tensors and plain containers and refuses any other global, so a checkpoint
carrying code is refused instead of run. Whatever the child writes is scanned
again by the importer like any other file.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

# Network and process creation are refused in the child.
_REFUSED_EVENTS = (
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.sendto",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
)
# Checkpoints that wrap their weights: Lightning's "state_dict", many repos' "model".
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")


class ConversionError(Exception):
    """A checkpoint could not be converted; the message says which and why."""


def safetensors_name(path: str) -> str:
    """``pytorch_model.bin`` → ``model.safetensors`` (the name transformers looks for);
    ``pytorch_model-00001-of-00002.bin`` → ``model-00001-of-00002.safetensors``; any
    other ``x.pt`` → ``x.safetensors``."""
    folder, _, name = path.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if stem.startswith("pytorch_model"):
        stem = "model" + stem[len("pytorch_model") :]
    return f"{folder}/{stem}.safetensors" if folder else f"{stem}.safetensors"


def _refuse(event: str, args) -> None:
    if event in _REFUSED_EVENTS or event.startswith("os.exec"):
        raise PermissionError(f"{event} is not allowed while converting")


def _tensors(loaded, name: str) -> dict:
    import torch

    if isinstance(loaded, dict) and not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in _WRAPPERS:
            inner = loaded.get(key)
            if isinstance(inner, dict) and inner:
                loaded = inner
                break
    if not isinstance(loaded, dict) or not loaded:
        raise ConversionError(f"{name} holds no state dict (a mapping of names to tensors).")
    bad = [
        str(k)
        for k, v in loaded.items()
        if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    ]
    if bad:
        raise ConversionError(
            f"{name} is not a plain state dict: {', '.join(bad[:5])} "
            f"{'is' if len(bad) == 1 else 'are'} not named tensors."
        )
    # Tied weights share storage, which safetensors refuses: each name gets its own copy.
    return {k: v.detach().contiguous().clone() for k, v in loaded.items()}


def _why(exc: Exception) -> str:
    """The line of torch's refusal that names the cause, without its advice to turn
    weights_only off (the one thing this conversion exists not to do)."""
    text = str(exc).strip()
    match = re.search(r"(Unsupported[^\n]*|Trying to [^\n]*)", text)
    if match:
        return match.group(1).strip().rstrip(".") + "; the file holds more than tensors."
    return text.splitlines()[0] if text else type(exc).__name__


def convert_file(source: Path, target: Path, name: str) -> dict:
    """Load one checkpoint with weights_only and write it as safetensors; what was written."""
    import torch
    from safetensors.torch import save_file

    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True, mmap=False)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError…
        raise ConversionError(
            f"{name} could not be loaded as weights only: {_why(exc)[:300]}"
        ) from None
    tensors = _tensors(loaded, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata={"format": "pt"})
    return {
        "tensors": len(tensors),
        "parameters": int(sum(t.numel() for t in tensors.values())),
        "dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()}),
    }


def _child(plan_path: Path) -> int:
    plan = json.loads(plan_path.read_text())
    # Set here, not by the parent between fork and exec: the parent is a threaded worker.
    resource.setrlimit(resource.RLIMIT_AS, (plan["memory_bytes"], plan["memory_bytes"]))
    sys.addaudithook(_refuse)
    results = {}
    try:
        for item in plan["files"]:
            results[item["name"]] = convert_file(
                Path(item["source"]), Path(item["target"]), item["name"]
            )
    except ConversionError as exc:
        Path(plan["result"]).write_text(json.dumps({"error": str(exc)}))
        return 2
    Path(plan["result"]).write_text(json.dumps({"files": results}))
    return 0


def convert_isolated(
    files: list[tuple[str, Path, Path]],
    workspace: Path,
    *,
    timeout_s: int,
    memory_bytes: int,
) -> dict[str, dict]:
    """Convert ``(name, source, target)`` triples in a child process; per-file summaries.

    Raises ConversionError with the child's message, or saying it ran out of
    time or memory.
    """
    plan = workspace / "conversion-plan.json"
    result = workspace / "conversion-result.json"
    plan.write_text(
        json.dumps(
            {
                "files": [{"name": n, "source": str(s), "target": str(t)} for n, s, t in files],
                "result": str(result),
                "memory_bytes": memory_bytes,
            }
        )
    )
    project = Path(__file__).resolve().parents[2]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workspace),
        "PYTHONPATH": str(project),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_PROXY": "*",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }

    try:
        done = subprocess.run(  # noqa: S603 (our own module, fixed arguments)
            [sys.executable, "-m", "jobs.ml.convert", str(plan)],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(
            f"The conversion took longer than {timeout_s} s and was stopped."
        ) from None
    outcome = json.loads(result.read_text()) if result.is_file() else {}
    if done.returncode != 0 or "files" not in outcome:
        if "error" in outcome:
            raise ConversionError(outcome["error"])
        tail = (done.stderr or "").strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        if "MemoryError" in (done.stderr or "") or done.returncode == -9:
            raise ConversionError(
                f"The conversion ran out of its {memory_bytes // 2**20} MiB of memory."
            )
        raise ConversionError(f"The conversion process failed: {tail[0][:300]}")
    return outcome["files"]


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
