"""The names code written for the Langfuse SDK imports from ``langfuse.experiment`` (``from lftrace.experiment
import Evaluation``): lftrace's own, from ``experiments`` and ``types``. The SDK's CI-gate helpers for its GitHub
Action (``RunnerContext``, ``RegressionError``) are not here: ``lftrace test`` and its exit codes gate a pipeline."""

from .experiments import DatasetItem, Evaluation, ExperimentItemResult, ExperimentResult
from .types import ExperimentScoreType

__all__ = ["DatasetItem", "Evaluation", "ExperimentItemResult", "ExperimentResult", "ExperimentScoreType"]
