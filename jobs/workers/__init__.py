"""What workers do for each job kind; importing the package registers every kind.

``checks`` (worker checks), ``imports`` (catalogue imports), ``conversions``
(torch checkpoints to safetensors), ``probes``, ``finetunes`` and
``release_checks`` (calibration, leakage of a fine-tuned version); ``data`` reads
a stored dataset version for the last three.
"""

from jobs.workers import checks, conversions, finetunes, imports, probes, release_checks

__all__ = ["checks", "conversions", "finetunes", "imports", "probes", "release_checks"]
