"""Error rates with their exact 95 % confidence interval (Clopper-Pearson), numpy only.

`error_rate(errors, trials)` gives metrics.json's ErrorRate fields. The bounds are the exact binomial
(Clopper-Pearson) ones: the upper bound is the p at which seeing `errors` or fewer has probability 2.5 %,
the lower bound the p at which seeing `errors` or more has probability 2.5 %. They are found by bisection
on the binomial tail, summed in log space, rather than with scipy.stats.beta.ppf: scipy is not in the
job image (requirements/job.txt) and would add tens of MB to it for two numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

CONFIDENCE = 0.95
_BISECTIONS = 60  # halvings of [0, 1]: the bound to about 1e-18, far below the 6 decimals written out
ROUND = 6


def _log_binomial_pmf(trials: int, p: float, upto: int) -> np.ndarray:
    """log P(X = k) for k = 0..upto, X ~ Binomial(trials, p), 0 < p < 1 (by the pmf's ratio recurrence)."""
    k = np.arange(upto, dtype=np.float64)
    steps = np.log((trials - k) / (k + 1.0)) + math.log(p) - math.log1p(-p)
    return trials * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)])


def binomial_cdf(errors: int, trials: int, p: float) -> float:
    """P(X <= errors) for X ~ Binomial(trials, p)."""
    if errors >= trials or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = _log_binomial_pmf(trials, p, errors)
    top = float(logs.max())
    return min(1.0, math.exp(top) * float(np.exp(logs - top).sum()))


def _bisect(falling: Callable[[float], float], target: float) -> float:
    """The p in [0, 1] where the decreasing `falling(p)` crosses `target`."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if falling(middle) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def clopper_pearson(errors: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided interval for a binomial proportion (errors of trials, trials >= 1)."""
    if trials < 1 or not 0 <= errors <= trials:
        raise ValueError(f"need 0 <= errors <= trials and trials >= 1 (got {errors} of {trials})")
    tail = (1.0 - confidence) / 2
    # lower: P(X >= errors) = tail, i.e. P(X <= errors - 1) = 1 - tail; upper: P(X <= errors) = tail.
    # At 0 errors (or all), the other end has the closed form 1 - tail ** (1 / trials) (or tail ** ...).
    if errors == 0:
        lower = 0.0
    elif errors == trials:
        lower = tail ** (1.0 / trials)
    else:
        lower = _bisect(lambda p: binomial_cdf(errors - 1, trials, p), 1.0 - tail)
    if errors == trials:
        upper = 1.0
    elif errors == 0:
        upper = 1.0 - tail ** (1.0 / trials)
    else:
        upper = _bisect(lambda p: binomial_cdf(errors, trials, p), tail)
    return lower, upper


def smallest_supported_rate(trials: int) -> float | None:
    """The smallest rate `trials` searches can show: the 95 % upper bound of no error at all, the same
    two-sided Clopper-Pearson bound as every `upper_95` (1 - 0.025 ** (1 / trials), about 3.7 / trials), so
    that a limit equal to it is met by a run with no error."""
    return clopper_pearson(0, trials)[1] if trials else None


def error_rate(errors: int, trials: int) -> dict[str, int | float | None]:
    """metrics.json's ErrorRate: errors of trials, the rate and its 95 % Clopper-Pearson bounds (None
    without trials). Bounds are rounded outward, so the interval written out still contains the exact one."""
    if trials == 0:
        return {"errors": errors, "trials": 0, "rate": None, "lower_95": None, "upper_95": None}
    lower, upper = clopper_pearson(errors, trials)
    scale = 10**ROUND
    return {
        "errors": errors,
        "trials": trials,
        "rate": round(errors / trials, ROUND),
        "lower_95": math.floor(lower * scale) / scale,
        "upper_95": min(1.0, math.ceil(upper * scale) / scale),
    }
