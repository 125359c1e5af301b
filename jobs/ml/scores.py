"""Transferability scores: how well a frozen model's features suit a labelled target task.

Each score answers "which pre-trained model should we fine-tune?" without
fine-tuning any of them, from an ``(N, D)`` feature matrix (one row per target
example) and its ``(N,)`` class labels:

- ``logme``: log maximum evidence of a Bayesian linear model on the features
  (You et al. 2021); cheap, no hyper-parameters, the best single predictor of
  fine-tuned accuracy in most published comparisons.
- ``linear_probe_accuracy`` and ``knn_accuracy``: cross-validated accuracy of
  the two classic probes; slower, but they speak in a unit people understand.
- ``h_score``: H-score (Bao et al. 2019), by default with the Ledoit-Wolf
  shrinkage of Ibrahim et al. 2022, which keeps it stable when D is large.
- ``mmd_rbf``: squared maximum mean discrepancy between two feature samples,
  a divergence (for instance between two data sets under the same model),
  used only to break ties.

``recommend`` turns those numbers into one ordering with a reason per model:
kNN accuracy decides, linear-probe accuracy breaks its ties.
Beside it, and without changing it: ``ranking_confidence`` says whether the
first place is ahead beyond noise (a paired bootstrap over the out-of-fold
predictions of ``linear_probe_predictions`` / ``knn_predictions``), and
``best_within_budget`` picks the best-ranked candidate that meets size and
latency limits.

Everything is plain numpy / scipy / scikit-learn in float64 and imports nothing
of Django, so the worker, the tests and the benchmarks share the same code.
Every score validates its input first and raises ``ValueError`` with a message
a person can act on, rather than returning NaN or a number computed from a
degenerate problem.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse
from scipy.linalg.blas import dsyrk
from sklearn.covariance import ledoit_wolf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "SCORE_NAMES",
    "BudgetPick",
    "Confidence",
    "Gap",
    "Ranked",
    "best_within_budget",
    "h_score",
    "human_count",
    "knn_accuracy",
    "knn_predictions",
    "linear_probe_accuracy",
    "linear_probe_predictions",
    "logme",
    "mmd_rbf",
    "paired_bootstrap",
    "ranking_confidence",
    "recommend",
    "stratified_sample",
    "validate_features",
    "validate_inputs",
    "validate_labels",
]

# The constants of the reference implementation (thuml/LogME, LogME.py,
# ``LogME._fit_fixed_point``): starting point alpha = beta = 1, at most 11
# fixed-point steps, stop when alpha/beta moves by at most 0.1 % relatively,
# 1e-5 added to the denominators, singular values of F at or below 1e-10
# dropped as rank deficiency when N > D. Keeping them makes our numbers
# comparable with published LogME tables.
_LOGME_MAX_ITER = 11
_LOGME_TOL = 1e-3
_LOGME_EPS = 1e-5
_LOGME_RANK_TOL = 1e-10

# Score names understood by ``recommend``; the first four are "higher is better"
# transferability scores, "mmd" is a divergence where lower is better.
SCORE_NAMES = ("logme", "knn_accuracy", "linear_probe_accuracy", "h_score", "mmd")
_PRIMARY = ("linear_probe_accuracy", "logme", "knn_accuracy", "h_score")
_LABELS = {
    "linear_probe_accuracy": "linear probe",
    "logme": "LogME",
    "knn_accuracy": "kNN",
    "h_score": "H-score",
    "mmd": "MMD",
}


# --------------------------------------------------------------------------- validation


def validate_labels(labels: np.ndarray, *, n_rows: int | None = None) -> np.ndarray:
    """Class ids ``0..C-1`` for ``labels``, or ``ValueError`` saying what is wrong.

    Every supervised score needs at least two classes (one class carries no
    information to transfer) and at least two examples per class (a class seen
    once can be neither cross-validated nor given a covariance). Any integer,
    boolean or string ids are accepted and renumbered in sorted order, so a
    data set whose ids have gaps does not silently score an empty class.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}.")
    if y.size == 0:
        raise ValueError("labels are empty: there is nothing to score.")
    if n_rows is not None and y.shape[0] != n_rows:
        raise ValueError(
            f"features have {n_rows} rows but labels have {y.shape[0]}: "
            "they must describe the same examples."
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("labels must be integer class ids, got non-integer floats.")
    elif y.dtype.kind not in "iubUSO":
        raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}.")
    classes, ids, counts = np.unique(y, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(
            f"labels contain a single class ({classes[0]!r}); scores need at least two classes."
        )
    small = classes[counts < 2]
    if small.size:
        shown = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in small[:5])
        more = f" and {small.size - 5} more" if small.size > 5 else ""
        raise ValueError(f"every class needs at least 2 examples; class {shown}{more} has only 1.")
    return ids.astype(np.int64, copy=False)


def validate_features(
    features: np.ndarray, *, name: str = "features", check_finite: bool = True
) -> np.ndarray:
    """``features`` as a C-contiguous float64 ``(N, D)`` array, or ``ValueError``.

    NaN or infinite values usually mean a broken forward pass (fp16 overflow,
    an empty input); scoring them would produce a confident-looking garbage
    number, so they are refused here. ``check_finite=False`` is for a caller
    that gets the same check more cheaply from its own arithmetic (LogME reads
    it off the diagonal of F^T F) and calls this again to word the error.
    """
    f = np.asarray(features)
    if f.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {f.dtype}.")
    if f.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (examples x dimensions), got {f.shape}.")
    if f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"{name} are empty (shape {f.shape}).")
    f = np.ascontiguousarray(f, dtype=np.float64)
    if not check_finite:
        return f
    finite = np.isfinite(f)
    if not finite.all():
        bad_rows = int((~finite.all(axis=1)).sum())
        raise ValueError(f"{name} contain NaN or infinite values (in {bad_rows} rows).")
    return f


def validate_inputs(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(features, class_ids)``; every supervised score starts here."""
    f = validate_features(features)
    return f, validate_labels(labels, n_rows=f.shape[0])


def _class_sums(ids: np.ndarray, n_classes: int, m: np.ndarray) -> np.ndarray:
    """``Y^T m`` for the one-hot ``Y`` of ``ids``: per-class sums of the rows of ``m``.

    A dense GEMM is fastest for a few classes (threaded BLAS); a sparse product
    keeps it O(N D) time and O(N) memory when there are many classes or rows.
    """
    n = ids.shape[0]
    if n_classes <= 32 and n_classes * n <= 2**23:
        y_t = np.zeros((n_classes, n))
        y_t[ids, np.arange(n)] = 1.0
        return y_t @ m
    y_t = scipy.sparse.csr_matrix(
        (np.ones(n), (ids, np.arange(n))), shape=(n_classes, n), dtype=np.float64
    )
    return np.asarray(y_t @ m)


def _n_folds(ids: np.ndarray, folds: int) -> int:
    """The fold rule: ``min(folds, smallest class)``, and never fewer than 2."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}.")
    return max(2, min(folds, int(np.bincount(ids).min())))


# --------------------------------------------------------------------------- LogME


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME score (You et al. 2021): mean over classes of the per-example log evidence.

    For each class, the one-vs-rest indicator is modelled as ``y = F w + noise``
    with prior ``w ~ N(0, 1/alpha)`` and noise ``N(0, 1/beta)``; alpha and beta
    are set by the fixed-point maximisation of the evidence ``p(y | F)`` and the
    score is ``log p(y | F) / N``, averaged over classes. Higher is better; the
    values are comparable between models on the same target data only.

    Numbers match the reference implementation (thuml/LogME, ``LogME.fit`` with
    its default fixed-point solver, to ~1e-14 relative) including its iteration
    cap and tolerance, so they stay comparable with published LogME values.
    That includes one quirk: when N <= D the reference leaves the D - N
    eigenvalues ``alpha`` of ``A = alpha I + beta F^T F`` out of ``log|A|``, so
    the score is the evidence's definition plus ``(D - N) / (2N) log alpha``
    per class (the tests pin this). It is
    faster because the spectral decomposition is one symmetric eigensolve of
    ``F^T F`` (half of it computed, by SYRK) when N > D, shared by all classes,
    the class projections come from per-class feature sums instead of the
    ``N x k`` left singular vectors, and all classes iterate together as
    vectors of length C.
    """
    # The finite check comes free from the diagonal of F^T F (see _logme_spectrum).
    f = validate_features(features, check_finite=False)
    ids = validate_labels(labels, n_rows=f.shape[0])
    evidence, _, _ = _logme_per_class(f, ids)
    return float(evidence.mean())


def _logme_per_class(
    f: np.ndarray,
    ids: np.ndarray,
    *,
    max_iter: int = _LOGME_MAX_ITER,
    tol: float = _LOGME_TOL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``(evidence / N, alpha, beta)``; the iteration knobs exist for the tests."""
    n, d = f.shape
    n_classes = int(ids.max()) + 1
    sigma, x2 = _logme_spectrum(f, ids, n_classes)
    # ||y_c||^2 is the class count for an indicator; the part of y outside the
    # row space of F (when k < N) is ||y||^2 minus what the k directions carry.
    res_x2 = np.bincount(ids, minlength=n_classes).astype(np.float64) - x2.sum(axis=0)
    s = sigma[:, None]

    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    m2 = np.zeros(n_classes)
    res2 = np.zeros(n_classes)
    active = np.ones(n_classes, dtype=bool)
    for _ in range(max_iter):
        t = alpha / beta
        gamma = (s / (s + t)).sum(axis=0)
        new_m2 = (s * x2 / (t + s) ** 2).sum(axis=0)
        new_res2 = (x2 / (1.0 + s / t) ** 2).sum(axis=0) + res_x2
        new_alpha = gamma / (new_m2 + _LOGME_EPS)
        new_beta = (n - gamma) / (new_res2 + _LOGME_EPS)
        converged = np.abs(new_alpha / new_beta - t) / t <= tol
        # A class that has converged keeps the values of the step that
        # converged, exactly as the reference's per-class ``break`` does.
        alpha = np.where(active, new_alpha, alpha)
        beta = np.where(active, new_beta, beta)
        m2 = np.where(active, new_m2, m2)
        res2 = np.where(active, new_res2, res2)
        active &= ~converged
        if not active.any():
            break

    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * np.log(alpha + beta * s).sum(axis=0)
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2.0 * np.pi)
    ) / n
    return evidence, alpha, beta


def _logme_spectrum(
    f: np.ndarray, ids: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values ``sigma`` (k,) of F and ``x2 = (U^T Y)^2`` (k, C)."""
    n, d = f.shape
    if n > d:
        # F^T F by SYRK (upper triangle only: half the flops of a GEMM) and a
        # symmetric eigensolve; F.T of a C-contiguous F is Fortran-ordered, so
        # SYRK reads it without a copy.
        gram = dsyrk(1.0, f.T, trans=0, lower=0)
        # diag(F^T F) = column sums of squares: NaN or inf if any entry is.
        if not np.isfinite(np.diagonal(gram)).all():
            validate_features(f)
            raise ValueError("features are too large: F^T F overflows float64.")
        w, v = scipy.linalg.eigh(
            gram, lower=False, overwrite_a=True, check_finite=False, driver="evd"
        )
        # The reference takes singular values of F^T F, i.e. |eigenvalues|.
        # For low-rank features about half the round-off eigenvalues come out
        # negative; clipping them to 0 would drop those directions and move
        # the score by tens of percent, while |lambda| keeps them as the
        # reference does (each contributes ~log(alpha), as in the exact |A|).
        w = np.abs(w)
        keep = np.sqrt(w) > _LOGME_RANK_TOL
        w, v = w[keep], v[:, keep]
        # U^T y = diag(1/s) V^T F^T y, and F^T Y is the per-class feature sums:
        # no N x k matrix U is ever formed.
        x = (v.T @ _class_sums(ids, n_classes, f).T) / np.sqrt(w)[:, None]
        return w, x**2
    validate_features(f)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    x = _class_sums(ids, n_classes, u).T
    return s**2, x**2


# --------------------------------------------------------------------------- probes


def knn_accuracy(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    k: int = 5,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Stratified k-fold accuracy of a k-nearest-neighbour classifier, cosine similarity.

    Rows are L2-normalised and compared by Euclidean distance, which orders
    neighbours exactly as cosine similarity does: embedding models are trained
    with cosine objectives and their norms mostly carry frequency or confidence
    rather than meaning. ``k = 5`` keeps the probe local (it measures whether
    neighbourhoods are label-pure, which is what retrieval and few-shot use
    need) and still works when a class has only a handful of examples; votes
    are weighted by inverse distance so that a small class is not outvoted by
    more numerous but farther neighbours. ``k`` is capped at the training fold
    size. Folds are ``min(folds, smallest class)``, at least 2; the result is
    the pooled out-of-fold accuracy (every example predicted exactly once).
    """
    predicted = knn_predictions(features, labels, k=k, folds=folds, seed=seed)
    ids = validate_labels(labels)
    return int((predicted == ids).sum()) / ids.size


def knn_predictions(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    k: int = 5,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """The out-of-fold class id ``knn_accuracy`` predicts for every example, in row order.

    Ids are those of ``validate_labels`` (sorted label values numbered from 0).
    Compared row by row with another model's predictions on the same rows and
    seed (hence the same folds), they pair the two accuracies example by
    example, which is what ``paired_bootstrap`` needs.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    f, ids = validate_inputs(features, labels)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = f / np.where(norms > 0, norms, 1.0)
    predicted = np.empty_like(ids)
    for train, test in _splits(ids, folds, seed):
        model = KNeighborsClassifier(
            n_neighbors=min(k, train.size), weights="distance", algorithm="brute"
        )
        model.fit(f[train], ids[train])
        predicted[test] = model.predict(f[test])
    return predicted


def linear_probe_accuracy(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 1000,
) -> float:
    """Stratified k-fold accuracy of L2-regularised logistic regression on standardised features.

    Standardising puts every dimension on the same scale, so one ``C`` (the
    inverse L2 strength, scikit-learn's default of 1) suits models whose
    feature norms differ by orders of magnitude. ``max_iter``
    bounds the time a probe can take; an L-BFGS run stopped there is still a
    fair (slightly pessimistic) probe, so scikit-learn's convergence warning is
    silenced rather than flooding the worker log. Folds as in ``knn_accuracy``;
    the result is the pooled out-of-fold accuracy.
    """
    predicted = linear_probe_predictions(
        features, labels, folds=folds, seed=seed, C=C, max_iter=max_iter
    )
    ids = validate_labels(labels)
    return int((predicted == ids).sum()) / ids.size


def linear_probe_predictions(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 1000,
) -> np.ndarray:
    """The out-of-fold class id ``linear_probe_accuracy`` predicts for every example, in row order.

    Each example is predicted once, by the model of the fold that held it out;
    ids as in ``knn_predictions``.
    """
    f, ids = validate_inputs(features, labels)
    predicted = np.empty_like(ids)
    for train, test in _splits(ids, folds, seed):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(f[train], ids[train])
        predicted[test] = model.predict(f[test])
    return predicted


def _splits(ids: np.ndarray, folds: int, seed: int):
    """Shuffled stratified folds, reproducible for a seed."""
    splitter = StratifiedKFold(n_splits=_n_folds(ids, folds), shuffle=True, random_state=seed)
    return splitter.split(np.zeros((ids.size, 1)), ids)


# --------------------------------------------------------------------------- H-score


def h_score(features: np.ndarray, labels: np.ndarray, *, regularized: bool = True) -> float:
    """H-score ``tr(cov(f)^-1 cov(E[f | y]))``: between-class over total variance.

    Bao et al. 2019 (ICIP, "An information-theoretic approach to
    transferability in task transfer learning"). With ``regularized`` (the
    default) the feature covariance is the Ledoit-Wolf shrinkage estimate
    ``(1 - a) S + a (tr S / D) I`` and the class-mean covariance is scaled by
    ``(1 - a)``, as proposed by Ibrahim, Ponomareva and Mazumder 2022 ("Newer is
    not always better: rethinking transferability metrics, their peculiarities,
    stability and performance"): the plain pseudo-inverse of a sample
    covariance with D close to N is dominated by noise directions and makes the
    score unstable and badly ranked. Both covariances are normalised by N (the
    Ledoit-Wolf convention) so the unregularised score equals Bao's exactly,
    and the regularised one equals it when the shrinkage is 0; the public
    tllib implementation mixes N and N-1 and is N/(N-1) larger. Higher is better.
    """
    f, ids = validate_inputs(features, labels)
    n = f.shape[0]
    f = f - f.mean(axis=0)
    counts = np.bincount(ids).astype(np.float64)
    class_means = _class_sums(ids, counts.size, f) / counts[:, None]
    # cov(E[f|y]) = sum_c (n_c / N) mu_c mu_c^T with the mu_c centred, so the
    # trace is sum_c (n_c / N) mu_c^T cov(f)^-1 mu_c: no N x D copy is needed.
    weighted = class_means * np.sqrt(counts / n)[:, None]
    if regularized:
        cov, shrinkage = ledoit_wolf(f, assume_centered=True)
        solved = _solve_psd(cov, weighted.T)
        return float((1.0 - shrinkage) * np.sum(weighted.T * solved))
    cov = (f.T @ f) / n
    # rcond as in the reference implementation: only exact-zero directions are cut.
    solved = np.linalg.pinv(cov, rcond=1e-15, hermitian=True) @ weighted.T
    return float(np.sum(weighted.T * solved))


def _solve_psd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^-1 b`` by Cholesky, or the pseudo-inverse when ``a`` is singular (zero shrinkage)."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, check_finite=False), b)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(a, rcond=1e-15, hermitian=True) @ b


# --------------------------------------------------------------------------- MMD


def mmd_rbf(x: np.ndarray, y: np.ndarray, *, max_samples: int = 1000, seed: int = 0) -> float:
    """Squared MMD between two samples with a Gaussian kernel at the median-heuristic bandwidth.

    This is the biased (V-statistic) estimate ``||mean phi(x) - mean phi(y)||^2``:
    unlike the unbiased U-statistic it is never negative and is exactly 0 for
    identical samples, so it reads as a distance on a page and sorts sanely as
    a tie-breaker; its O(1/m) bias is negligible at the default 1000 rows per
    side. The kernel is ``exp(-|a - b|^2 / (2 h^2))`` with ``h`` the median
    pairwise Euclidean distance over the pooled (subsampled) rows, the usual
    scale-free choice. Each side is subsampled without replacement to at most
    ``max_samples`` rows, reproducibly for a seed, which bounds the cost at
    O((2 max_samples)^2 D).
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}.")
    a = validate_features(x, name="x")
    b = validate_features(y, name="y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"x and y must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}."
        )
    rng = np.random.default_rng(seed)
    if a.shape[0] > max_samples:
        a = a[np.sort(rng.choice(a.shape[0], max_samples, replace=False))]
    if b.shape[0] > max_samples:
        b = b[np.sort(rng.choice(b.shape[0], max_samples, replace=False))]
    pooled = np.vstack([a, b])
    sq = _squared_distances(pooled)
    h = _median_heuristic(sq)
    if h == 0.0:
        # Every pooled row is the same point: the two samples are identical.
        return 0.0
    kernel = np.exp(-sq / (2.0 * h * h))
    m = a.shape[0]
    value = kernel[:m, :m].mean() + kernel[m:, m:].mean() - 2.0 * kernel[:m, m:].mean()
    return float(max(value, 0.0))


def _squared_distances(z: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, clipped at 0 against round-off."""
    norms = np.einsum("ij,ij->i", z, z)
    sq = norms[:, None] + norms[None, :] - 2.0 * (z @ z.T)
    np.maximum(sq, 0.0, out=sq)
    np.fill_diagonal(sq, 0.0)
    return sq


def _median_heuristic(sq: np.ndarray) -> float:
    """Median pairwise distance (pairs i < j); duplicates ignored if they are the majority."""
    dist = np.sqrt(sq[np.triu_indices(sq.shape[0], k=1)])
    if dist.size == 0:
        return 0.0
    h = float(np.median(dist))
    if h == 0.0 and np.any(dist > 0):
        # More than half the pairs are duplicates; a zero bandwidth would make
        # the kernel an identity test, so use the scale of the distinct pairs.
        h = float(np.median(dist[dist > 0]))
    return h


# --------------------------------------------------------------------------- sampling


def stratified_sample(labels: np.ndarray, max_examples: int, *, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a stratified sample of at most ``max_examples`` rows.

    Scores cost O(N D^2) or worse, so large target sets are subsampled first;
    stratifying keeps the class proportions (largest-remainder rounding) and
    every class keeps at least 2 rows where it has them, so the cross-validated
    probes and the per-class statistics still see every class. Deterministic
    for a seed. Returns all indices when ``max_examples >= len(labels)``;
    raises ``ValueError`` when ``max_examples`` is too small to keep 2 rows of
    every class.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("labels must be a non-empty 1-D array.")
    n = y.size
    if max_examples >= n:
        return np.arange(n)
    _, ids, counts = np.unique(y, return_inverse=True, return_counts=True)
    floor = np.minimum(counts, 2)
    if max_examples < floor.sum():
        raise ValueError(
            f"max_examples={max_examples} cannot keep 2 examples of each of the "
            f"{counts.size} classes; it must be at least {int(floor.sum())}."
        )
    quota = max_examples * counts / n
    alloc = np.clip(np.floor(quota).astype(np.int64), floor, counts)
    # Largest remainder: hand out (or take back) one row at a time where the
    # allocation is furthest from the proportional quota; ties go to the lower
    # class id, so the result depends on nothing but the labels.
    while (excess := int(alloc.sum()) - max_examples) != 0:
        if excess > 0:
            gap = np.where(alloc > floor, alloc - quota, -np.inf)
            alloc[np.argmax(gap)] -= 1
        else:
            gap = np.where(alloc < counts, quota - alloc, -np.inf)
            alloc[np.argmax(gap)] += 1
    rng = np.random.default_rng(seed)
    order = np.argsort(ids, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    picked = [
        rng.choice(order[starts[c] : starts[c + 1]], alloc[c], replace=False)
        for c in range(counts.size)
    ]
    return np.sort(np.concatenate(picked))


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class Ranked:
    """One candidate's place in the recommended order, with a one-line reason."""

    name: str
    rank: int
    reason: str


def recommend(candidates: Mapping[str, Mapping[str, float | None]]) -> list[Ranked]:
    """One recommended ordering of candidate models, best first.

    Rule: candidates are ordered by kNN accuracy (``knn_accuracy``), highest
    first; equal kNN accuracies are broken by linear-probe accuracy (higher
    first), then by MMD (lower first), then by name. At each of those levels a
    missing or non-finite value sorts after every present one, so a failed
    probe never helps: a candidate without kNN accuracy comes after every
    candidate that has one. Candidates with none of the four scores (LogME,
    linear probe, kNN, H-score) come last. LogME and H-score are reported in
    the reason but do not move the order.

    Why this rule: it was chosen on the portal's transferability benchmark
    (``bench/transfer.py``: 4 labelled datasets, 6 text encoders on each and
    all-mpnet-base-v2 on two so far; the truth is the test accuracy of the
    better of two full fine-tunes; 128-token features) from a small family of
    rules (mean ranks of the four scores and of every subset, on raw and
    L2-normalised features; kNN counted twice in a mean rank; the mean of the
    two probe accuracies; kNN averaged over k = 1, 5, 20) by
    leave-one-dataset-out. There it reaches a mean weighted Kendall tau of
    0.763 against 0.618 for the mean rank of the four scores it replaces (tau
    0.639 against 0.452), top-1 regret 0 for both, worst dataset 0.286 against
    0.309 (sms_spam, whose true top four lie within 0.5 points). The mean rank
    let LogME and H-score lift shallow truncations of an encoder above the
    encoder itself (without all-mpnet-base-v2, to first place on wordnet_nouns:
    27.3 points of regret). Rules chosen on three datasets and scored on the
    fourth reach the same 0.763 on the ones left out: the choice was kNN
    averaged over k on three folds and this rule on the fourth. The average
    over k scores higher in-sample (0.793) only through sms_spam, and it is
    not a score the probe stores or bootstraps, so plain kNN (k = 5) decides.
    Linear probe breaks its ties as the other score in the same unit.
    """
    names = sorted(candidates)
    values = {
        metric: {name: _finite(candidates[name].get(metric)) for name in names}
        for metric in SCORE_NAMES
    }

    def key(name: str) -> tuple:
        return (*(_high_first(values[metric][name]) for metric in _RANK_BY), _tail(values, name))

    ordered = sorted(names, key=key)
    return [
        Ranked(name=name, rank=position, reason=_reason(name, values))
        for position, name in enumerate(ordered, start=1)
    ]


# Scores ``recommend`` sorts by, in order: the first decides, the next breaks its ties.
_RANK_BY = ("knn_accuracy", "linear_probe_accuracy")


def _high_first(value: float | None) -> tuple[bool, float]:
    """Sort key for a higher-is-better score: present before missing, then highest first."""
    return (value is None, -(value or 0.0))


def _tail(values: dict[str, dict[str, float | None]], name: str) -> tuple:
    """The last sort levels: some score before none, then MMD (lower first, missing last), name."""
    unscored = all(values[metric][name] is None for metric in _PRIMARY)
    mmd = values["mmd"][name]
    return (unscored, mmd is None, mmd or 0.0, name)


def _finite(value: float | None) -> float | None:
    """``None`` for a missing, NaN or infinite score."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _place(scores: dict[str, float | None], value: float) -> int:
    """Competition place (1 + how many are strictly better), for wording."""
    return 1 + sum(1 for v in scores.values() if v is not None and v > value)


def _ordinal(place: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= place % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(place % 10, "th")
    return f"{place}{suffix}"


def _and(parts: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _reason(name: str, values: dict[str, dict[str, float | None]]) -> str:
    """One line: the place on kNN (which sets the order), the other scores, how a tie was broken."""
    mmd = values["mmd"][name]
    if all(values[metric][name] is None for metric in _PRIMARY):
        text = "No transferability score available (every probe failed)"
        return text + (f"; MMD {mmd:.3g}" if mmd is not None else "")
    knn = values["knn_accuracy"][name]
    if knn is None:
        parts = ["No kNN, so ranked after every candidate with one"]
    else:
        place = _place(values["knn_accuracy"], knn)
        label = "Best kNN" if place == 1 else f"{_ordinal(place)} on kNN"
        parts = [f"{label} ({knn:.3g}), which sets the order"]
    by_place: dict[int, list[str]] = {}
    missing = []
    for metric in _PRIMARY:
        if metric == "knn_accuracy":
            continue
        value = values[metric][name]
        if value is None:
            missing.append(_LABELS[metric])
            continue
        place = _place(values[metric], value)
        by_place.setdefault(place, []).append(f"{_LABELS[metric]} ({value:.3g})")
    for place in sorted(by_place):
        label = "best" if place == 1 else f"{_ordinal(place)} on"
        parts.append(f"{label} {_and(by_place[place])}")
    if missing:
        parts.append(f"no {_and(missing)}")
    tie = _tie_words(name, values)
    return "; ".join(parts + ([tie] if tie else []))


def _tie_words(name: str, values: dict[str, dict[str, float | None]]) -> str:
    """How an equal kNN accuracy was settled ("tie on kNN broken by linear probe"), or ""."""
    knn = values["knn_accuracy"][name]
    if knn is None:
        return ""
    group = [other for other, v in values["knn_accuracy"].items() if other != name and v == knn]
    if not group:
        return ""
    tied, broken = ["kNN"], []
    for metric in ("linear_probe_accuracy", "mmd"):
        mine = values[metric][name]
        same = [other for other in group if values[metric][other] == mine]
        if len(same) < len(group):
            shown = "missing" if mine is None else f"{mine:.3g}"
            broken.append(f"MMD ({shown})" if metric == "mmd" else _LABELS[metric])
        elif not broken:
            tied.append(_LABELS[metric])
        group = same
        if not group:
            break
    if group:
        broken.append("name")
    return f"tie on {_and(tied)} broken by {', then '.join(broken)}"


# ------------------------------------------------------------------- how sure the ranking is

# Resamples of the paired bootstrap. 1,000 puts the 2.5 % and 97.5 %
# percentiles on about 25 resamples each, plenty for a yes/no on "does the
# interval contain 0"; the resampling itself costs O(resamples), see below.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95


@dataclass(frozen=True)
class Gap:
    """How far the top candidate's accuracy is ahead of another's on this sample, and how surely.

    ``difference`` is top minus other (the observed accuracies' gap); ``low``
    and ``high`` bound its central ``BOOTSTRAP_LEVEL`` percentile interval over
    bootstrap resamples of the examples; ``holds`` is the share of resamples
    in which the top one's accuracy is at least the other's.
    """

    difference: float
    low: float
    high: float
    holds: float

    @property
    def separated(self) -> bool:
        """The top one is ahead beyond noise: the whole interval lies above 0."""
        return self.low > 0.0

    @property
    def other_ahead(self) -> bool:
        """The other one is ahead beyond noise on this score (the interval lies below 0)."""
        return self.high < 0.0


def paired_bootstrap(
    top_correct: np.ndarray,
    other_correct: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> Gap:
    """Paired bootstrap over examples of the accuracy gap between two models on the same rows.

    ``top_correct`` and ``other_correct`` say, example by example, whether each
    model's out-of-fold prediction was right (``*_predictions(...) == ids``).
    Pairing matters: both models saw the same examples and the same folds, so
    the noise that moves both (a hard example, a lucky fold) cancels, and the
    interval is far narrower than two separate intervals would suggest.

    A resample draws N examples with replacement; the gap it gives depends
    only on how many drawn examples only the top model got right (W) and how
    many only the other did (L): ``(W - L) / N``. Drawing those counts from
    the multinomial ``(N; w/N, l/N, rest)`` of the observed counts is the same
    distribution as drawing the N indices, at O(resamples) instead of
    O(resamples * N). Reproducible for a seed.
    """
    a = np.asarray(top_correct)
    b = np.asarray(other_correct)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"both correctness arrays must be 1-D and of the same length, got {a.shape} "
            f"and {b.shape}: they must describe the same examples."
        )
    if a.size == 0:
        raise ValueError("there are no examples to resample.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}.")
    a = a.astype(bool)
    b = b.astype(bool)
    n = a.size
    wins = int(np.sum(a & ~b))
    losses = int(np.sum(~a & b))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [wins / n, losses / n, (n - wins - losses) / n], size=resamples)
    gaps = (counts[:, 0] - counts[:, 1]) / n
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(gaps, [tail, 1.0 - tail])
    return Gap(
        difference=(wins - losses) / n,
        low=float(low),
        high=float(high),
        holds=float(np.mean(gaps >= 0)),
    )


@dataclass(frozen=True)
class Confidence:
    """How sure a ranking's first place is on one accuracy: its gap to every other candidate.

    ``near`` is the top candidate followed, in ranking order, by every
    candidate not separated from it (see ``ranking_confidence``); a ranking
    is clear when that is the top one alone.
    """

    top: str
    gaps: dict[str, Gap]
    near: list[str]
    resamples: int = BOOTSTRAP_RESAMPLES

    @property
    def clear(self) -> bool:
        return len(self.near) == 1

    @property
    def ahead(self) -> list[str]:
        """Candidates whose accuracy is above the top one's beyond noise."""
        return [name for name in self.near[1:] if self.gaps[name].other_ahead]

    def summary(self, *, score: str = "linear-probe accuracy") -> str:
        """The verdict in a sentence or two, for the results page and the API."""
        if not self.gaps:
            return f"Only {self.top} could be compared, so there is no margin to measure."
        if self.clear:
            least = min(gap.holds for gap in self.gaps.values())
            share = (
                f"all {self.resamples:,}"
                if least == 1.0
                else f"at least {least:.1%} of {self.resamples:,}"
            )
            return (
                f"{self.top} is ahead of every other candidate beyond noise on this sample: "
                f"its {score} is at least as high as each other's in {share} paired "
                "bootstrap resamples of the examples."
            )
        text = (
            f"{_and(self.near)} are within noise of each other on this sample; "
            "fine-tune them briefly to decide (bake-off)."
        )
        if self.ahead:
            verb = "is" if len(self.ahead) == 1 else "are"
            text += (
                f" On {score} alone {_and(self.ahead)} {verb} ahead of {self.top} beyond "
                f"noise; {self.top} ranks first on kNN accuracy, which sets the order."
            )
        return text


def ranking_confidence(
    ranked: Sequence[str],
    correct: Mapping[str, np.ndarray],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> Confidence:
    """The top candidate of ``ranked`` against each other one, by paired bootstrap.

    Rule: another candidate is within noise of the top unless the whole
    ``level`` (95 %) interval of the accuracy gap, top minus other, lies above
    0. That is a two-sided test at 5 %, and it implies the top one holds in
    at least 97.5 % of resamples; a rule on ``holds`` alone (say 90 %) would
    call gaps separated that a second sample of the same size would often
    reverse. A candidate ahead of the top one on this accuracy beyond noise
    (the ranking is led by kNN accuracy, so that can happen) is not separated
    either: it is listed with the near ties, and ``Confidence.ahead`` names it.
    Candidates without correctness data (``correct`` lacks them) are left out.
    """
    if not ranked:
        raise ValueError("there is no ranking to qualify.")
    top = ranked[0]
    if top not in correct:
        raise ValueError(f"{top} has no per-example results to compare.")
    gaps = {
        name: paired_bootstrap(
            correct[top], correct[name], resamples=resamples, level=level, seed=seed
        )
        for name in ranked[1:]
        if name in correct
    }
    near = [top] + [name for name, gap in gaps.items() if not gap.separated]
    return Confidence(top=top, gaps=gaps, near=near, resamples=resamples)


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class BudgetPick:
    """The best-ranked candidate that meets every limit set, or none, and what each other broke.

    ``misses`` maps every candidate that breaks a limit to one phrase per limit
    it breaks ("22.7M parameters, over the 10.0M limit"); a candidate whose
    cost was not measured breaks every limit set, since it cannot be shown to
    meet them.
    """

    name: str | None
    rank: int | None
    misses: dict[str, list[str]]
    summary: str


def best_within_budget(
    ranked: Sequence[str],
    costs: Mapping[str, Mapping[str, float | None]],
    *,
    max_parameters: int | None = None,
    max_latency_ms: float | None = None,
) -> BudgetPick | None:
    """The first of ``ranked`` (best first) whose cost meets every limit, or ``None`` with no limit.

    ``costs`` gives per candidate ``parameters`` and ``latency_ms``. A limit is
    met at equality (a limit is the most one accepts). The ranking itself is
    left as it is: this only reads it, so the budget never changes which
    model scores best, only which one the run points to when size or speed
    is bounded.
    """
    limits = {
        "parameters": max_parameters,
        "latency_ms": max_latency_ms,
    }
    limits = {key: value for key, value in limits.items() if value is not None}
    if not limits:
        return None
    misses: dict[str, list[str]] = {}
    for name in ranked:
        broken = [
            _miss(key, (costs.get(name) or {}).get(key), limit) for key, limit in limits.items()
        ]
        broken = [phrase for phrase in broken if phrase]
        if broken:
            misses[name] = broken
    fits = [name for name in ranked if name not in misses]
    budget = _and([_limit_words(key, limit) for key, limit in limits.items()])
    if not fits:
        excluded = "; ".join(f"{name}: {_and(phrases)}" for name, phrases in misses.items())
        return BudgetPick(
            name=None,
            rank=None,
            misses=misses,
            summary=f"No candidate fits the budget ({budget}). {excluded}.",
        )
    name = fits[0]
    rank = list(ranked).index(name) + 1
    if rank == 1:
        summary = f"{name}, ranked first, fits the budget ({budget})."
    else:
        above = _and([f"{other} ({_and(misses[other])})" for other in ranked[: rank - 1]])
        summary = (
            f"Best within the budget ({budget}): {name}, ranked {_ordinal(rank)}. "
            f"Ranked above it but over budget: {above}."
        )
    return BudgetPick(name=name, rank=rank, misses=misses, summary=summary)


def _miss(key: str, value: float | None, limit: float) -> str:
    """How ``value`` breaks ``limit``, or "" when it meets it."""
    what = "parameters" if key == "parameters" else "CPU latency"
    value = _finite(value)
    if value is None:
        return f"{what} not measured"
    if value <= limit:
        return ""
    if key == "parameters":
        shown, cap = human_count(value), human_count(limit)
        if shown == cap:  # 10.04M against 10.0M: rounded alike, so say it exactly
            shown, cap = f"{int(value):,}", f"{int(limit):,}"
        return f"{shown} parameters, over the {cap} limit"
    return f"{value:.3g} ms CPU latency, over the {limit:g} ms limit"


def _limit_words(key: str, limit: float) -> str:
    if key == "parameters":
        return f"at most {human_count(limit)} parameters"
    return f"at most {limit:g} ms CPU latency per example"


def human_count(value: float) -> str:
    """22713216 -> '22.7M', as the portal writes parameter counts everywhere."""
    n = float(value)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))
