"""Worker nodes that share nothing but the broker, the database and the bucket.

Two real worker processes on the same queues, each with temporary folders of
its own (media, model cache, work, staging): whichever takes the probe is
stopped afterwards, so the other one runs the fine-tune. The catalogue, the
dataset, the feature sets, the checkpoints and the fine-tuned version only
meet through the bucket, and this process, a third node, reads the result
back from it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from django.db import transaction
from transformers import AutoModelForSequenceClassification

from jobs.models import FeatureSet, FineTuneRun, Job
from jobs.services.finetunes import finetune_launch
from jobs.services.probes import probe_launch
from tests.builders.catalogue import base_model
from tests.builders.datasets import ticket_dataset
from tests.builders.governance import approve_reuse
from tests.builders.processes import empty_broker, start_worker
from tests.storage.conftest import files_under
from zoo.storage import materialize_version

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _node(name: str, tmp_path: Path, bucket):
    """A worker process on a 'host' of its own: every local folder is private to it."""
    home = tmp_path / name
    folders = {
        key: home / key.lower() for key in ("MEDIA_ROOT", "MODEL_CACHE_DIR", "WORK_DIR",
                                             "IMPORT_STAGING_DIR")
    }  # fmt: skip
    for folder in folders.values():
        folder.mkdir(parents=True)
    worker = start_worker(
        name, tmp_path, queues="gpu,default", STORAGE_URL=bucket.url,
        **{key: str(value) for key, value in folders.items()},
    )  # fmt: skip
    return worker, folders


def _wait(job: Job, workers, timeout: float = 300.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if not job.is_active:
            return job
        for worker in workers:
            assert worker.popen.poll() is None, f"{worker.name} exited:\n{worker.output()}"
        time.sleep(0.2)
    logs = "\n".join(f"--- {w.name}\n{w.output()}" for w in workers)
    raise AssertionError(f"job {job.pk} is {job.status} at {job.stage!r}\n{logs}")


def test_a_probe_and_a_fine_tune_on_two_nodes_meet_only_through_the_bucket(
    bucket, alice, sam, tmp_path, settings
):
    base = base_model(tmp_path / "bert0", "acme/tiny-bert", steward=sam, seed=0)
    other = base_model(tmp_path / "bert1", "acme/tiny-bert-b", steward=sam, seed=1)
    approve_reuse(alice, base)
    data = ticket_dataset(alice, n_per_class=12)
    empty_broker()
    nodes = {name: _node(name, tmp_path, bucket) for name in ("node-a", "node-b")}
    workers = [worker for worker, _ in nodes.values()]
    try:
        with transaction.atomic():
            probe = probe_launch(
                actor=alice, dataset_version=data, versions=[base, other], max_examples=24
            )
        probe_job = _wait(probe.job, workers)
        prober = probe_job.worker.partition("@")[0]
        nodes[prober][0].stop()  # the fine-tune must go to the other node
        workers = [worker for worker, _ in nodes.values() if worker.name != prober]
        with transaction.atomic():
            run = finetune_launch(
                actor=alice,
                base_version=base,
                dataset_version=data,
                strategy="head",
                config={"epochs": 2, "batch_size": 4, "patience": 0},
            )
        finetune_job = _wait(run.job, workers)
    finally:
        for worker, _ in nodes.values():
            worker.stop()

    assert probe_job.status == Job.Status.SUCCEEDED, probe_job.error
    assert finetune_job.status == Job.Status.SUCCEEDED, finetune_job.error
    tuner = finetune_job.worker.partition("@")[0]
    assert {prober, tuner} == {"node-a", "node-b"}
    probe_dirs, tune_dirs = nodes[prober][1], nodes[tuner][1]

    # Each node unpacked only what it used, from the bucket, into its own cache...
    assert {p.name for p in probe_dirs["MODEL_CACHE_DIR"].iterdir()} == {
        base.revision,
        other.revision,
    }
    assert {p.name for p in tune_dirs["MODEL_CACHE_DIR"].iterdir()} == {base.revision}
    # ...and wrote nothing to a local folder another node would have to reach.
    for dirs in (probe_dirs, tune_dirs):
        assert files_under(dirs["MEDIA_ROOT"]) == []
    assert not Path(settings.MEDIA_ROOT).exists() or files_under(settings.MEDIA_ROOT) == []

    # What the probe node stored is in the bucket, under its content hash.
    keys = set(bucket.names())
    feature_sets = FeatureSet.objects.filter(dataset_version=data)
    assert feature_sets.count() == 2
    assert all(fs.blob_name in keys for fs in feature_sets)
    # The fine-tune node's version is in the bucket, its checkpoints gone, no temporaries left.
    run = FineTuneRun.objects.get(pk=run.pk)
    output = run.output_version
    assert output is not None
    assert output.parent == base
    assert {a.blob_name for a in output.artifacts.all()} <= keys
    assert not any(key.startswith(("checkpoints/", "incoming/")) for key in keys), sorted(keys)

    # This process, a third node, loads the fine-tuned model from the bucket alone.
    folder = materialize_version(output, tmp_path / "web-cache")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.num_labels == len(data.label_counts)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[2, 5, 7, 3]])).logits
    assert logits.shape == (1, len(data.label_counts))
