"""ONNX export of real tiny models: ONNX Runtime agrees with PyTorch, int8 is smaller, timed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from jobs.ml import serving
from jobs.ml.config import FineTuneConfig
from jobs.ml.finetune import finetune, predict_proba
from tests.builders.weights import colour_images, spam_task, tiny_bert, tiny_effnet, tiny_vit

CLASSES = ["ham", "spam"]
TRAIN = spam_task(4)
VAL = spam_task(1, start=10)
TEST = spam_task(2, start=20)
# Texts of other lengths and a batch size the trace never saw.
ODD = [
    "hi",
    "a much longer message than any the tracing sample held, " * 3,
    "free prize",
    "see you at five",
    "WINNER call now",
]


def _train(base: Path, work: Path, strategy: str) -> Path:
    config = FineTuneConfig(
        strategy=strategy, epochs=2, batch_size=8, patience=0, lr_search=False, learning_rate=5e-3
    )
    return finetune(base, "text", CLASSES, TRAIN, VAL, config, work_dir=work).output_dir


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("models") / "bert")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, base) -> Path:
    return _train(base, tmp_path_factory.mktemp("full"), "full")


def test_onnx_runtime_matches_the_portal_s_own_inference_and_int8_is_smaller(classifier, tmp_path):
    texts, labels = TEST
    exported = serving.export_classifier(classifier, "text", texts, tmp_path / "model.onnx")
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]  # dynamic axes, not fixed sizes

    found = serving.check_classifier(exported, labels, calls=6)

    # ONNX Runtime, run independently here, against the portal's PyTorch inference path.
    session = serving.session(exported.path, threads=1)
    ort_proba = np.zeros((len(texts), 2))
    for index, logits in serving.outputs(exported, lambda b: session.run(None, b)[0], batch_size=7):
        ort_proba[index] = serving.softmax(logits)
    reference = predict_proba(classifier, "text", texts)
    assert np.max(np.abs(ort_proba - reference)) < 1e-4
    assert found["compared"]["onnxruntime"]["max_abs_prob_diff"] < 1e-4
    assert found["compared"]["onnxruntime"]["max_abs_prob_diff"] == pytest.approx(
        np.max(np.abs(ort_proba - reference)), abs=2e-6
    )
    assert found["compared"]["onnxruntime"]["label_agreement"] == 1.0
    accuracy = float(np.mean(reference.argmax(1) == labels))
    assert found["compared"]["pytorch"]["accuracy"] == pytest.approx(accuracy)
    assert found["compared"]["onnxruntime"]["accuracy"] == pytest.approx(accuracy)
    assert found["n"] == len(texts)

    # The int8 copy is a real, smaller file whose accuracy is measured on the same rows.
    int8 = Path(found["int8_path"])
    assert int8.is_file()
    assert found["sizes"]["onnxruntime_int8"] == int8.stat().st_size
    assert found["sizes"]["onnxruntime_int8"] < 0.6 * found["sizes"]["onnxruntime"]
    int8_session = serving.session(int8, threads=1)
    int8_labels = np.zeros(len(texts), dtype=np.int64)
    for index, logits in serving.outputs(exported, lambda b: int8_session.run(None, b)[0]):
        int8_labels[index] = logits.argmax(1)
    assert found["compared"]["onnxruntime_int8"]["accuracy"] == pytest.approx(
        float(np.mean(int8_labels == labels))
    )

    for runtime in ("pytorch", "onnxruntime", "onnxruntime_int8"):
        for batch, size in (("batch_1", 1), ("batch_32", 32)):
            timing = found["latency"][runtime][batch]
            assert timing["batch"] == size
            assert 0 < timing["p50_ms"] <= timing["p95_ms"]


def test_the_export_accepts_batches_and_lengths_the_trace_never_saw(classifier, tmp_path):
    exported = serving.export_classifier(classifier, "text", ODD, tmp_path / "model.onnx")
    session = serving.session(exported.path, threads=1)
    batch = exported.make_batch(np.arange(len(ODD)))
    assert batch["input_ids"].shape[0] == 5
    logits = session.run(None, batch)[0]
    assert logits.shape == (5, 2)
    assert np.max(np.abs(serving.softmax(logits) - predict_proba(classifier, "text", ODD))) < 1e-4


def test_a_lora_adapter_is_merged_into_its_base_and_exported(base, tmp_path):
    adapter = _train(base, tmp_path / "lora", "lora")
    texts, labels = TEST
    exported = serving.export_classifier(
        adapter, "text", texts, tmp_path / "model.onnx", base_model_dir=base
    )
    found = serving.check_classifier(exported, labels, calls=5, quantised=False)
    reference = predict_proba(adapter, "text", texts, base_model_dir=base)
    assert found["compared"]["onnxruntime"]["max_abs_prob_diff"] < 1e-4
    assert found["compared"]["pytorch"]["max_abs_prob_diff"] == 0.0
    assert found["compared"]["pytorch"]["accuracy"] == pytest.approx(
        float(np.mean(reference.argmax(1) == labels))
    )
    assert "onnxruntime_int8" not in found["compared"]


def test_a_base_encoder_exports_its_hidden_states(base, tmp_path):
    from jobs.ml.features import extract_text_features
    from jobs.ml.reference import reference_texts

    texts = reference_texts(40)
    exported = serving.export_encoder(base, texts, tmp_path / "model.onnx")
    found = serving.check_encoder(exported, calls=5)
    assert found["n"] == 40
    assert found["max_abs_hidden_diff"] < 1e-4
    assert found["min_pooled_cosine"] > 0.99999
    # Mean-pooled ONNX Runtime states equal the probes' own PyTorch features.
    session = serving.session(exported.path, threads=1)
    pooled = np.zeros((40, 32))
    for index in np.array_split(np.arange(40), 4):
        batch = exported.make_batch(index)
        hidden = session.run(None, batch)[0]
        mask = batch["attention_mask"][..., None]
        pooled[index] = (hidden * mask).sum(1) / mask.sum(1)
    features = extract_text_features(base, texts, max_length=128)
    assert np.max(np.abs(pooled - features)) < 1e-4


def test_nothing_to_export_or_time_is_refused(classifier, tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        serving.export_classifier(classifier, "text", [], tmp_path / "model.onnx")
    exported = serving.export_classifier(classifier, "text", ODD, tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="5 rows"):
        serving.check_classifier(exported, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="at least one"):
        serving.latency(lambda b: None, exported.make_batch, 0, batch=1, calls=5)


@pytest.mark.parametrize("maker", [tiny_vit, tiny_effnet], ids=["vit", "efficientnet-lite"])
def test_image_classifiers_export_too(maker, tmp_path):
    paths, labels = colour_images(tmp_path / "images", 6)
    config = FineTuneConfig(strategy="head", epochs=1, batch_size=4, patience=0, lr_search=False)
    trained = finetune(
        maker(tmp_path / "base"),
        "vision",
        ["red", "green"],
        (paths, labels),
        (paths[:4], labels[:4]),
        config,
        work_dir=tmp_path / "work",
    ).output_dir
    exported = serving.export_classifier(trained, "vision", paths, tmp_path / "model.onnx")
    found = serving.check_classifier(exported, labels, calls=5)
    reference = predict_proba(trained, "vision", paths)
    session = serving.session(exported.path, threads=1)
    ort = np.zeros_like(reference)
    for index, logits in serving.outputs(exported, lambda b: session.run(None, b)[0]):
        ort[index] = serving.softmax(logits)
    assert np.max(np.abs(ort - reference)) < 1e-4
    assert found["compared"]["onnxruntime"]["label_agreement"] == 1.0
    assert found["sizes"]["onnxruntime_int8"] < found["sizes"]["onnxruntime"]


def test_a_model_that_does_not_export_says_so(tmp_path):
    import torch

    class Eigen(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eig(x)[0].real  # no ONNX operator for it

    with pytest.raises(ValueError, match=r"does not export to ONNX .*linalg_eig"):
        serving._export(
            Eigen(), ["x"], {"x": np.ones((2, 3, 3), np.float32)}, tmp_path / "m.onnx", seq=False
        )


@pytest.mark.parametrize("maker", [tiny_vit, tiny_effnet], ids=["vit", "efficientnet-lite"])
def test_a_base_image_backbone_exports_to_the_features_the_probes_take(maker, tmp_path):
    from jobs.ml.features import extract_image_features
    from jobs.ml.reference import reference_images

    base = maker(tmp_path / "base")
    images = reference_images(40, size=32)
    exported = serving.export_image_encoder(base, images, tmp_path / "onnx" / "model.onnx")
    found = serving.check_image_encoder(exported, calls=5)

    # ONNX Runtime on the exported file gives the probes' own features, row by row.
    probes = extract_image_features(base, images).astype(np.float64)
    session = serving.session(exported.path, threads=1)
    ort = np.zeros_like(probes)
    for index, values in serving.outputs(exported, lambda b: session.run(None, b)[0]):
        ort[index] = values
    scale = np.max(np.abs(probes))
    assert np.max(np.abs(ort - probes)) <= 1e-5 * scale
    assert found["dim"] == probes.shape[1]
    assert found["max_abs_hidden_diff"] == found["compared"]["onnxruntime"]["max_abs_diff"]
    assert found["compared"]["onnxruntime"]["max_rel_diff"] < 1e-5
    assert found["min_pooled_cosine"] > 0.99999
    assert found["compared"]["pytorch"] == {
        "max_abs_diff": 0.0,
        "max_rel_diff": 0.0,
        "min_cosine": pytest.approx(1.0),
    }
    # int8: a smaller file whose features still point the same way.
    assert found["sizes"]["onnxruntime_int8"] < found["sizes"]["onnxruntime"]
    assert found["compared"]["onnxruntime_int8"]["min_cosine"] > 0.9
    assert set(found["latency"]) == {"pytorch", "onnxruntime", "onnxruntime_int8"}
    assert found["latency"]["onnxruntime"]["batch_32"]["calls"] == 3
    with pytest.raises(ValueError, match="no images"):
        serving.export_image_encoder(base, [], tmp_path / "empty.onnx")
