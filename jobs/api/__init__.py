"""REST endpoints of jobs (``jobs``), imports, probes and fine-tunes."""
