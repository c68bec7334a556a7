"""The package version (one place; run ids and sweep hashes include it)."""

__version__ = "0.1.0"
