"""What workers do for each job kind; importing the package registers every kind.

``checks`` (worker checks), ``imports`` (catalogue imports), ``probes`` and
``finetunes``; ``data`` reads a stored dataset version for the last two.
"""

from jobs.workers import checks, finetunes, imports, probes

__all__ = ["checks", "finetunes", "imports", "probes"]
