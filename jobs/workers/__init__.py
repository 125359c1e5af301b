"""What workers do for each job kind; importing the package registers every kind.

``checks`` (worker checks), ``imports`` (catalogue imports), ``conversions``
(torch checkpoints to safetensors), ``probes`` and ``finetunes``; ``data`` reads
a stored dataset version for the last two.
"""

from jobs.workers import checks, conversions, finetunes, imports, probes

__all__ = ["checks", "conversions", "finetunes", "imports", "probes"]
