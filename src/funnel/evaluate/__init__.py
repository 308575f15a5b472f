"""Offline evaluation of the whole funnel: train as of a date, replay the held-out period
through the served engine (and baselines), and report every figure in HTML + JSON."""

from funnel.evaluate.metrics import catalog_coverage, list_metrics, mean_ci

__all__ = ["catalog_coverage", "list_metrics", "mean_ci"]
