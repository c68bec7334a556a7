"""Experiments: configs, plans (groups of runs per static shape), execution, results."""

from userchoice.experiments.config import ConfigError, ExperimentConfig, load_config
from userchoice.experiments.plan import Plan, make_plan

__all__ = ["ConfigError", "ExperimentConfig", "Plan", "load_config", "make_plan"]
