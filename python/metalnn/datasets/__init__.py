"""Datasets that ship in registry packages (nothing is downloaded at run time)."""

from .mnist import load_mnist

__all__ = ["load_mnist"]
