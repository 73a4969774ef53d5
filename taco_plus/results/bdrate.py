"""Bjøntegaard delta rate (G. Bjøntegaard, VCEG-M33, 2001) in ``"pchip"`` (JVET CTC, VCEG-AL22) or the
original ``"cubic"`` interpolation (docs/evaluation.md, "BD-rate")."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

METHODS = ("pchip", "cubic")


def _prepare(rate: Sequence[float], metric: Sequence[float], method: str, which: str):
    rate, metric = np.asarray(rate, dtype=np.float64), np.asarray(metric, dtype=np.float64)
    if rate.shape != metric.shape or rate.ndim != 1:
        raise ValueError(f"{which}: rate and metric must be 1-D arrays of the same length")
    if not (np.isfinite(metric).all() and np.isfinite(rate).all() and (rate > 0).all()):
        raise ValueError(f"{which}: non-finite values or non-positive rates")
    needed = 4 if method == "cubic" else 2
    if len(rate) < needed:
        raise ValueError(f"{which}: {method!r} BD-rate needs at least {needed} points, got {len(rate)}")
    order = np.argsort(metric)
    metric, log_rate = metric[order], np.log(rate[order])
    if np.any(np.diff(metric) == 0):
        raise ValueError(f"{which}: repeated metric values; the curve is not monotonic")
    if not (np.all(np.diff(log_rate) > 0) or np.all(np.diff(log_rate) < 0)):
        raise ValueError(f"{which}: rate is not monotonic in the metric")
    return metric, log_rate


def _integral(metric: np.ndarray, log_rate: np.ndarray, lo: float, hi: float, method: str) -> float:
    """∫_lo^hi log-rate(metric) d metric under the chosen interpolation."""
    if method == "cubic":
        antiderivative = np.polyint(np.polyfit(metric, log_rate, 3))
        return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))
    return float(PchipInterpolator(metric, log_rate).integrate(lo, hi))


def bd_rate(rate_anchor: Sequence[float], metric_anchor: Sequence[float], rate_test: Sequence[float],
            metric_test: Sequence[float], method: str = "pchip") -> float:
    """BD-rate in percent of the test curve (rates in bpp, quality values) against the anchor."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    m_a, r_a = _prepare(rate_anchor, metric_anchor, method, "anchor")
    m_t, r_t = _prepare(rate_test, metric_test, method, "test")
    lo, hi = max(m_a[0], m_t[0]), min(m_a[-1], m_t[-1])
    if lo >= hi:
        raise ValueError(f"the curves share no metric interval (anchor {m_a[0]:.4g}..{m_a[-1]:.4g}, "
                         f"test {m_t[0]:.4g}..{m_t[-1]:.4g})")
    mean_diff = (_integral(m_t, r_t, lo, hi, method) - _integral(m_a, r_a, lo, hi, method)) / (hi - lo)
    return float((np.exp(mean_diff) - 1.0) * 100.0)
