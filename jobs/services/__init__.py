"""What starts jobs and what their workers write back, one module per concern.

``imports``, ``probes``, ``finetunes``, ``studies`` and ``checks`` each check
a request (the acting user first) and queue a job through ``jobs.engine``; the
writes a worker makes for its job go through the same modules, for the attempt
that owns the job.
"""
