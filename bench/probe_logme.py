"""LogME at probe scale: ``jobs.ml.scores.logme`` against a straightforward implementation.

Builds synthetic features with class structure (one Gaussian mean per class
plus unit noise; 50,000 x 768, 10 classes by default: a typical probe on a
sentence-embedding or ViT model), then times, in the same process on the same
array:

- the baseline, written here the obvious way in float64: F^T F once, its
  eigenvalues once (for the effective number of parameters gamma), then per
  class and per fixed-point step form A = alpha I + beta F^T F, solve
  A m = beta F^T y with ``np.linalg.solve`` and compute the residual
  |y - F m|^2 over all N rows; the evidence uses ``np.linalg.slogdet(A)``. Same
  update rule, iteration cap (11), tolerance (1e-3 on alpha/beta) and 1e-5
  guards as the reference implementation (thuml/LogME), so both must agree;
- ``jobs.ml.scores.logme``: one symmetric eigensolve of F^T F shared by all
  classes, the fixed point run on the spectrum for all classes at once.

Prints both times (best of ``--repeats``, run alternately), the speed-up (the
target is at least 2x) and the absolute and relative difference of the two
scores. Needs no services.

Usage: .venv/bin/python bench/probe_logme.py [--n 50000] [--d 768] [--classes 10] [--repeats 3]
``bench/probe.py`` imports ``run`` from here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jobs.ml.scores import logme  # noqa: E402 - needs the repository root on sys.path

MAX_ITER = 11
TOL = 1e-3
EPS = 1e-5


def synthetic(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features ``mean[label] + noise`` in float64, balanced labels in shuffled order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % classes)
    means = rng.standard_normal((classes, d)) * 0.3
    features = rng.standard_normal((n, d))
    features += means[labels]
    return features, labels


def straightforward_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME with dense D x D solves per class and step: the baseline to beat."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    gram = f.T @ f
    eigenvalues = np.linalg.eigvalsh(gram)
    identity = np.eye(d)
    evidences = []
    for c in range(int(labels.max()) + 1):
        y = (labels == c).astype(np.float64)
        fty = f.T @ y
        alpha, beta = 1.0, 1.0
        for _ in range(MAX_ITER):
            a = alpha * identity + beta * gram
            m = beta * np.linalg.solve(a, fty)
            gamma = float(np.sum(beta * eigenvalues / (alpha + beta * eigenvalues)))
            m2 = float(m @ m)
            res2 = float(np.sum((y - f @ m) ** 2))
            t = alpha / beta
            alpha = gamma / (m2 + EPS)
            beta = (n - gamma) / (res2 + EPS)
            if abs(alpha / beta - t) / t <= TOL:
                break
        _, logdet = np.linalg.slogdet(alpha * identity + beta * gram)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - logdet / 2
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _timed(fn, *args) -> tuple[float, float]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def run(n: int = 50_000, d: int = 768, classes: int = 10, seed: int = 0, repeats: int = 3) -> dict:
    """Time both implementations on the same synthetic data; return the figures.

    The two run alternately ``repeats`` times and the best time of each is
    kept, so a burst of load from another process on a shared machine does
    not decide the ratio.
    """
    features, labels = synthetic(n, d, classes, seed)
    # Warm up BLAS threads and imports on a small slice so neither side pays for them.
    logme(features[:2000, :64], labels[:2000])
    straightforward_logme(features[:2000, :64], labels[:2000])

    fast_times, slow_times = [], []
    for _ in range(max(1, repeats)):
        seconds, fast = _timed(logme, features, labels)
        fast_times.append(seconds)
        seconds, slow = _timed(straightforward_logme, features, labels)
        slow_times.append(seconds)
    fast_s, slow_s = min(fast_times), min(slow_times)
    return {
        "n": n,
        "d": d,
        "classes": classes,
        "repeats": len(fast_times),
        "logme_s": fast_s,
        "straightforward_s": slow_s,
        "speedup": slow_s / fast_s,
        "logme": fast,
        "straightforward": slow,
        "abs_diff": abs(fast - slow),
        "rel_diff": abs(fast - slow) / abs(slow),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = run(n=args.n, d=args.d, classes=args.classes, seed=args.seed, repeats=args.repeats)
    print(f"LogME, N={r['n']:,} D={r['d']} C={r['classes']} (float64, best of {r['repeats']})")
    print(f"  jobs.ml.scores.logme     {r['logme_s']:8.3f} s   score {r['logme']:.12f}")
    slow_s, slow = r["straightforward_s"], r["straightforward"]
    print(f"  straightforward (solve)  {slow_s:8.3f} s   score {slow:.12f}")
    print(f"  speed-up                 {r['speedup']:8.2f} x   (target >= 2x)")
    print(f"  agreement                abs {r['abs_diff']:.2e}, rel {r['rel_diff']:.2e}")


if __name__ == "__main__":
    main()
