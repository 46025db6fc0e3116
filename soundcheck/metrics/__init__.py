"""Metric maths: pure functions on arrays (no IO, no Redis), float64 accumulation."""

from soundcheck.metrics.frechet import GaussianStats, frechet_distance

__all__ = ["GaussianStats", "frechet_distance"]
