"""The worker-check job: which worker took it, and what it can run on."""

from __future__ import annotations

import time

from jobs.engine import JobContext, register
from jobs.ml.device import environment_report
from jobs.models import Job
from portal.errors import PortalError


@register(Job.Kind.WORKER_CHECK)
def worker_check(ctx: JobContext) -> dict:
    """Report what the worker that took this job can do.

    With ``require_gpu`` the job fails on a worker without CUDA, which is how
    an operator confirms that the ``gpu`` queue really reaches a GPU node.
    With ``hold_s`` the worker keeps the job that many seconds, reporting each
    second: a failover drill (kill the worker; another takes the job over).
    """
    ctx.progress(0.1, stage="Inspecting the worker")
    report = environment_report()
    ctx.log(f"python {report['python']}, torch {report['torch']}, device {ctx.device}")
    if ctx.params.get("require_gpu") and not report["cuda_available"]:
        raise PortalError(
            f"This worker has no CUDA device (it runs on {ctx.device}); "
            "the gpu queue should be served by GPU nodes."
        )
    hold = int(ctx.params.get("hold_s") or 0)
    for second in range(hold):
        ctx.progress(0.1 + 0.9 * second / hold, stage=f"Holding the job ({second} of {hold} s)")
        time.sleep(1)
    ctx.progress(1.0, stage="Done")
    return report
