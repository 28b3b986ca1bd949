"""plugkit: a toolkit and reference plugins for LLM AI plugins."""

__version__ = "0.1.0"
