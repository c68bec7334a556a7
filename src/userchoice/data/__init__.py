"""Datasets and markets: arrays the engine runs on, with provenance."""

from userchoice.data.dataset import Dataset, Market, make_market

__all__ = ["Dataset", "Market", "make_market"]
