"""Runnable examples: ``python -m metalnn.examples.mnist``."""
