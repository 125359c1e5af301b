"""What tests build, once: ``weights`` and ``files`` (no Django), ``catalogue``,
``datasets`` and ``governance`` (through the real services)."""
