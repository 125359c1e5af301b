"""Every "Use this model" snippet the model page shows runs, as shown, against the live portal.

A base model, a full fine-tune and a LoRA adapter made by real fine-tune runs; for
each, the snippet is read from the page's HTML and run in a fresh interpreter with
HF_ENDPOINT and HF_TOKEN set, using the real transformers and peft. The fine-tune
and the adapter must come back with the class names the run trained on.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from huggingface_hub.utils import close_session

from jobs.engine import job_execute
from jobs.models import FineTuneRun
from jobs.services.finetunes import finetune_launch
from tests.builders.catalogue import base_model
from tests.builders.datasets import ticket_dataset
from tests.builders.governance import approve_reuse, token_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SNIPPET = re.compile(r'<pre class="log small snippet" id="snippet-transformers">(.*?)</pre>', re.S)
REPORT = """
import json, torch
result = {"kind": type(model).__name__}
config = getattr(model, "config", None) or model.base_model.model.config
result["labels"] = [config.id2label[i] for i in range(len(config.id2label))]
if "tokenizer" in dir():
    result["ids"] = tokenizer("refund my order")["input_ids"]
print(json.dumps(result))
"""


@pytest.fixture
def endpoint(live_server, settings) -> str:
    settings.STATIC_URL = "/static/"
    yield f"{live_server.url}/hf"
    close_session()


def _finetune(alice, base, data, strategy: str):
    run = finetune_launch(
        actor=alice,
        base_version=base,
        dataset_version=data,
        strategy=strategy,
        config={"epochs": 1, "batch_size": 8, "patience": 0},
    )
    assert job_execute(job_id=run.job_id) == "succeeded"
    return FineTuneRun.objects.select_related("output_version__model").get(pk=run.pk)


def _run_snippet(page_html: str, endpoint: str, token: str, home: Path) -> dict:
    found = SNIPPET.search(page_html)
    assert found, "the page shows no transformers snippet"
    code = html.unescape(found.group(1))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_TOKEN=token,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", code + "\n" + REPORT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, code + "\n---\n" + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_snippet_runs_and_gives_the_trained_class_names(
    endpoint, alice, sam, tmp_path, settings
):
    base = base_model(Path(settings.IMPORT_ROOTS[0]) / "bert", "acme/bert", steward=sam)
    approve_reuse(alice, base)
    data = ticket_dataset(alice)
    full = _finetune(alice, base, data, "full").output_version
    adapter = _finetune(alice, base, data, "lora").output_version
    steward = Client()
    steward.force_login(sam)
    token = token_for(sam)

    def page(version) -> str:
        url = f"{version.model.get_absolute_url()}?version={version.label}"
        return steward.get(url).content.decode()

    on_base = _run_snippet(page(base), endpoint, token, tmp_path / "base")
    on_full = _run_snippet(page(full), endpoint, token, tmp_path / "full")
    on_adapter = _run_snippet(page(adapter), endpoint, token, tmp_path / "adapter")

    assert on_base["kind"] == "BertModel"
    assert on_full["kind"] == "BertForSequenceClassification"
    assert on_full["labels"] == sorted(data.label_counts)
    assert on_adapter["kind"].startswith("PeftModel")
    assert on_adapter["labels"] == on_full["labels"]
    assert on_base["ids"] == on_full["ids"] == on_adapter["ids"]
