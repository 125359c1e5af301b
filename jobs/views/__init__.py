"""HTML pages of jobs: the job list (``jobs``), imports, probes and fine-tunes."""
