"""Datasets: arrays, names and provenance read from files (no learners, no preferences)."""

from userchoice.data.dataset import Dataset

__all__ = ["Dataset"]
