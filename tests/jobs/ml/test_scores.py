"""Transferability scores, checked against independent computations written here.

LogME is checked two ways: against a plain port of the reference algorithm
(thuml/LogME) and against the Bayesian evidence computed from its definition
with dense matrices. The other scores are checked on cases small enough to
work out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.spatial.distance import pdist

from jobs.ml.probe import pack_correct, score_candidate, unpack_correct
from jobs.ml.scores import (
    Ranked,
    _logme_per_class,
    _median_heuristic,
    _squared_distances,
    best_within_budget,
    h_score,
    knn_accuracy,
    knn_predictions,
    linear_probe_accuracy,
    linear_probe_predictions,
    logme,
    mmd_rbf,
    paired_bootstrap,
    ranking_confidence,
    recommend,
    stratified_sample,
    validate_inputs,
    validate_labels,
)


def _clustered(n: int, d: int, classes: int, *, spread: float = 0.5, seed: int = 0):
    """Gaussian features around one random mean per class, labels balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    means = rng.standard_normal((classes, d)) * spread
    return means[labels] + rng.standard_normal((n, d)), labels


# --------------------------------------------------------------------------- LogME


def _reference_logme(f: np.ndarray, y: np.ndarray) -> float:
    """A plain-numpy port of the reference LogME, kept line for line with its algorithm.

    Source: https://github.com/thuml/LogME/blob/main/LogME.py (``truncated_svd``
    and ``LogME._fit_fixed_point``, the default ``fit`` for classification),
    without numba. It forms the N x k left singular vectors and loops over
    classes one at a time, which is what the code under test avoids.
    """
    f = f.astype(np.float64)
    n, d = f.shape
    if n > d:
        _, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        k = int(np.sum(s > 1e-10))
        s, vh = s[:k].reshape(-1, 1), vh[:k]
        u = (f @ vh.T) / s.reshape(1, -1)
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
        s = s.reshape(-1, 1)
    sigma = s**2
    evidences = []
    for i in range(int(y.max() + 1)):
        y_ = (y == i).astype(np.float64).reshape(-1, 1)
        x2 = (u.T @ y_) ** 2
        res_x2 = (y_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2.0 * np.log(alpha)
            + n / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _dense_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) / N from the definition, two ways that must agree.

    Weight space: w ~ N(0, I/alpha), y | w ~ N(F w, I/beta), so with
    A = alpha I + beta F^T F and m = beta A^-1 F^T y the evidence is
    D/2 log alpha + N/2 log beta - beta/2 |y - F m|^2 - alpha/2 |m|^2
    - 1/2 log|A| - N/2 log 2 pi. Function space: y ~ N(0, I/beta + F F^T/alpha).
    """
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet_a = np.linalg.slogdet(a)
    weight_space = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - beta / 2 * np.sum((y - f @ m) ** 2)
        - alpha / 2 * (m @ m)
        - logdet_a / 2
        - n / 2 * math.log(2 * math.pi)
    )
    cov = np.eye(n) / beta + f @ f.T / alpha
    _, logdet_c = np.linalg.slogdet(cov)
    function_space = -0.5 * (n * math.log(2 * math.pi) + logdet_c + y @ np.linalg.solve(cov, y))
    assert weight_space == pytest.approx(function_space, rel=1e-9)
    return function_space / n


def _max_dense_evidence(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(max evidence / N, alpha, beta) by a general-purpose optimiser over log alpha, log beta."""
    result = minimize(
        lambda p: -_dense_evidence(f, y, math.exp(p[0]), math.exp(p[1])),
        x0=np.zeros(2),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 5000},
    )
    return -result.fun, math.exp(result.x[0]), math.exp(result.x[1])


@pytest.mark.parametrize(
    ("n", "d", "classes"),
    [(40, 100, 3), (300, 20, 4), (64, 64, 2), (2000, 48, 10), (2000, 48, 40)],
    ids=["n<d", "n>d", "n=d", "ten-classes", "forty-classes"],
)
def test_logme_matches_reference_port(n, d, classes):
    features, labels = _clustered(n, d, classes, seed=n)

    assert logme(features, labels) == pytest.approx(_reference_logme(features, labels), rel=1e-10)


def test_logme_matches_reference_port_when_features_are_rank_deficient():
    features, labels = _clustered(500, 30, 3, seed=5)
    features[:, 5] = 0.0  # a dead unit: an exactly zero singular value, dropped
    features[:, 7] = 2.0 * features[:, 3]  # a duplicated direction: round-off level
    rng = np.random.default_rng(5)
    low_rank = rng.standard_normal((500, 10)) @ rng.standard_normal((10, 40))

    assert logme(features, labels) == pytest.approx(_reference_logme(features, labels), rel=1e-8)
    # 30 of the 40 eigenvalues of F^T F are round-off, about half of them
    # negative. The reference keeps them all (singular values are |lambda|);
    # dropping the negative ones would move the score by about 20 %.
    assert logme(low_rank, labels) == pytest.approx(_reference_logme(low_rank, labels), rel=1e-8)


def test_logme_is_computed_in_float64_from_float32_and_strided_input():
    features, labels = _clustered(300, 16, 3, seed=2)
    as_float32 = features.astype(np.float32)
    strided = np.asfortranarray(as_float32)

    expected = _reference_logme(as_float32.astype(np.float64), labels)
    assert logme(as_float32, labels) == pytest.approx(expected, rel=1e-12)
    assert logme(strided, labels) == pytest.approx(expected, rel=1e-12)


def test_logme_converged_fixed_point_is_the_maximum_of_the_dense_evidence():
    features, labels = _clustered(60, 8, 3, seed=7)
    f, ids = validate_inputs(features, labels)

    evidence, alphas, betas = _logme_per_class(f, ids, max_iter=1000, tol=1e-14)

    for c in range(3):
        y = (ids == c).astype(np.float64)
        # At the fixed point's (alpha, beta) the evidence is the definition's ...
        assert evidence[c] == pytest.approx(_dense_evidence(f, y, alphas[c], betas[c]), rel=1e-9)
        # ... and that point is the maximiser (the 1e-5 the reference adds to
        # the denominators moves it a hair away from the exact stationary point).
        best, best_alpha, best_beta = _max_dense_evidence(f, y)
        assert evidence[c] == pytest.approx(best, rel=1e-8)
        assert alphas[c] == pytest.approx(best_alpha, rel=1e-3)
        assert betas[c] == pytest.approx(best_beta, rel=1e-3)


def test_logme_with_the_reference_iteration_budget_is_close_to_the_maximum():
    features, labels = _clustered(60, 8, 3, seed=11)
    f, ids = validate_inputs(features, labels)
    maxima = [_max_dense_evidence(f, (ids == c).astype(np.float64))[0] for c in range(3)]

    score = logme(features, labels)

    # 11 steps / 0.1 % on alpha/beta stop before full convergence: the score
    # is just below the true maximum (its m belongs to the previous step).
    assert score <= np.mean(maxima) + 1e-12
    assert score == pytest.approx(np.mean(maxima), rel=1e-4)


def test_logme_with_fewer_examples_than_dimensions_keeps_the_reference_log_alpha_term():
    n, d = 12, 20
    features, labels = _clustered(n, d, 2, seed=3)
    f, ids = validate_inputs(features, labels)

    evidence, alphas, betas = _logme_per_class(f, ids, max_iter=1000, tol=1e-14)

    # With rank k = N < D, |A| has D - k eigenvalues equal to alpha that the
    # reference's formula (and ours, to match it) leaves out: it reports the
    # definition's evidence plus (D - k) / (2N) log alpha.
    for c in range(2):
        y = (ids == c).astype(np.float64)
        dense = _dense_evidence(f, y, alphas[c], betas[c])
        assert evidence[c] == pytest.approx(dense + (d - n) / (2 * n) * math.log(alphas[c]))


def test_logme_renumbers_class_ids_and_ranks_informative_features_higher():
    features, labels = _clustered(400, 16, 2, spread=2.0, seed=4)
    noise = np.random.default_rng(4).standard_normal(features.shape)

    assert logme(features, labels * 7 + 3) == pytest.approx(logme(features, labels), rel=1e-12)
    assert logme(features, labels) > logme(noise, labels)


# --------------------------------------------------------------------------- probes


def _separable():
    """Three tight, far-apart clusters in different directions, 6 points each."""
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
    labels = np.repeat(np.arange(3), 6)
    return centres[labels] + rng.normal(scale=0.1, size=(18, 3)), labels


def test_knn_accuracy_is_one_on_separable_clusters():
    features, labels = _separable()

    assert knn_accuracy(features, labels) == 1.0


def test_knn_accuracy_ignores_row_norms_because_it_is_cosine():
    features, labels = _clustered(120, 8, 3, spread=1.0, seed=9)
    scales = np.random.default_rng(9).uniform(0.01, 100.0, size=(120, 1))

    assert knn_accuracy(features * scales, labels) == knn_accuracy(features, labels)


def test_knn_accuracy_uses_two_folds_when_a_class_has_two_examples():
    # One rotation of the separable set: with 2 examples in class 2 only 2
    # folds fit, and each held-out point still has its twin in training.
    features, labels = _separable()
    keep = np.r_[0:12, 12:14]

    assert knn_accuracy(features[keep], labels[keep], folds=10) == 1.0


def test_linear_probe_accuracy_is_one_on_separable_data_and_chance_on_random_labels():
    features, labels = _separable()
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((200, 5))
    coin = rng.integers(0, 2, size=200)

    assert linear_probe_accuracy(features, labels) == 1.0
    assert 0.35 <= linear_probe_accuracy(noise, coin) <= 0.65


def test_probes_are_deterministic_for_a_seed():
    features, labels = _clustered(150, 6, 3, spread=0.4, seed=12)

    assert knn_accuracy(features, labels, seed=3) == knn_accuracy(features, labels, seed=3)
    assert linear_probe_accuracy(features, labels, seed=3) == linear_probe_accuracy(
        features, labels, seed=3
    )


@pytest.mark.parametrize("score", [knn_accuracy, linear_probe_accuracy])
def test_probes_refuse_fewer_than_two_folds(score):
    features, labels = _separable()

    with pytest.raises(ValueError, match="folds must be at least 2"):
        score(features, labels, folds=1)


# --------------------------------------------------------------------------- H-score


def test_h_score_on_a_two_class_toy_case_worked_by_hand():
    # x = 0, 2 | 4, 6 and z = 0, 1 | 0, 1 (classes split after two rows).
    # Centred: x = -3, -1, 1, 3 and z = -1/2, 1/2, -1/2, 1/2, so with 1/N:
    # cov(f) = [[5, 1/2], [1/2, 1/4]], det = 1; class means of x are 1 and 5,
    # of z both 1/2, so cov(E[f|y]) = [[4, 0], [0, 0]] and
    # H = tr(cov(f)^-1 cov(E[f|y])) = 4 * (cov(f)^-1)_xx = 4 * (1/4) / 1 = 1.
    features = np.array([[0.0, 0.0], [2.0, 1.0], [4.0, 0.0], [6.0, 1.0]])
    labels = np.array([0, 0, 1, 1])

    assert h_score(features, labels, regularized=False) == pytest.approx(1.0, rel=1e-12)


def test_regularized_h_score_in_one_dimension_is_between_over_total_variance():
    # In 1-D the Ledoit-Wolf target equals the sample variance: shrinkage 0,
    # so both versions give var(class means) / var = 4 / 5.
    features = np.array([[0.0], [2.0], [4.0], [6.0]])
    labels = np.array([0, 0, 1, 1])

    assert h_score(features, labels) == pytest.approx(0.8, rel=1e-12)
    assert h_score(features, labels, regularized=False) == pytest.approx(0.8, rel=1e-12)


def test_regularized_h_score_uses_ledoit_wolf_shrinkage():
    features, labels = _clustered(40, 30, 3, spread=1.0, seed=6)
    x = features - features.mean(axis=0)
    n, d = x.shape
    # Ledoit & Wolf (2004), written out: S = X^T X / n, target mu I with
    # mu = tr S / d, d2 = |S - mu I|^2, b2 = min(sum_k |x_k x_k^T - S|^2 / n^2, d2).
    s = x.T @ x / n
    mu = np.trace(s) / d
    d2 = np.sum((s - mu * np.eye(d)) ** 2)
    b2 = min(sum(np.sum((np.outer(r, r) - s) ** 2) for r in x) / n**2, d2)
    shrink = b2 / d2
    cov = (1 - shrink) * s + shrink * mu * np.eye(d)
    means = np.array([x[labels == c].mean(axis=0) for c in range(3)])
    between = sum((labels == c).mean() * np.outer(means[c], means[c]) for c in range(3))
    expected = np.trace(np.linalg.solve(cov, (1 - shrink) * between))

    assert 0 < shrink < 1
    assert h_score(features, labels) == pytest.approx(expected, rel=1e-9)
    # With D close to N the plain score is inflated by noise directions.
    assert h_score(features, labels, regularized=False) > h_score(features, labels)


# --------------------------------------------------------------------------- MMD


def test_mmd_of_identical_samples_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 5))

    assert mmd_rbf(x, x.copy()) == pytest.approx(0.0, abs=1e-12)


def test_mmd_grows_with_the_shift_between_gaussians():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 4))
    base = rng.standard_normal((300, 4))

    values = [mmd_rbf(x, base + shift) for shift in (0.0, 0.5, 1.0, 2.0)]

    assert values[1] > 0.01
    assert values == sorted(values)
    assert values[0] < values[1] / 5


def test_mmd_uses_the_median_heuristic_bandwidth():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 3))
    y = rng.standard_normal((20, 3)) + 0.7
    pooled = np.vstack([x, y])
    h = float(np.median(pdist(pooled)))

    def k(a, b):
        return math.exp(-np.sum((a - b) ** 2) / (2 * h * h))

    expected = (
        np.mean([[k(a, b) for b in x] for a in x])
        + np.mean([[k(a, b) for b in y] for a in y])
        - 2 * np.mean([[k(a, b) for b in y] for a in x])
    )

    assert _median_heuristic(_squared_distances(pooled)) == pytest.approx(h, rel=1e-12)
    assert mmd_rbf(x, y) == pytest.approx(expected, rel=1e-10)


def test_mmd_subsamples_each_side_reproducibly():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 3))
    y = rng.standard_normal((400, 3)) + 0.3

    first = mmd_rbf(x, y, max_samples=100, seed=4)

    assert first == mmd_rbf(x, y, max_samples=100, seed=4)
    assert first != mmd_rbf(x, y, max_samples=100, seed=5)
    assert first == pytest.approx(mmd_rbf(x, y), abs=0.05)


# --------------------------------------------------------------------------- sampling


def test_stratified_sample_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [500, 300, 200])

    picked = stratified_sample(labels, 100, seed=0)

    assert picked.size == 100
    assert np.bincount(labels[picked]).tolist() == [50, 30, 20]
    assert np.all(np.diff(picked) > 0)


def test_stratified_sample_keeps_every_class_with_two_rows_where_it_has_them():
    labels = np.array([0] * 1000 + [1] * 2 + [2] * 5 + [3])

    picked = stratified_sample(labels, 20, seed=1)

    counts = np.bincount(labels[picked], minlength=4).tolist()
    assert picked.size == 20
    assert counts[1:] == [2, 2, 1]
    assert counts[0] == 15


def test_stratified_sample_is_deterministic_for_a_seed():
    labels = np.random.default_rng(0).integers(0, 5, size=1000)

    assert np.array_equal(
        stratified_sample(labels, 50, seed=3), stratified_sample(labels, 50, seed=3)
    )
    assert not np.array_equal(
        stratified_sample(labels, 50, seed=3), stratified_sample(labels, 50, seed=4)
    )


def test_stratified_sample_returns_everything_when_the_budget_covers_it():
    labels = np.array(["cat", "dog", "cat", "dog"])

    assert stratified_sample(labels, 4).tolist() == [0, 1, 2, 3]
    assert stratified_sample(labels, 10).tolist() == [0, 1, 2, 3]


def test_stratified_sample_refuses_a_budget_below_two_per_class():
    labels = np.repeat(np.arange(10), 10)

    with pytest.raises(ValueError, match="it must be at least 20"):
        stratified_sample(labels, 19)


# --------------------------------------------------------------------------- recommend


def _scores(logme_, probe, knn, h, mmd=None):
    return {
        "logme": logme_,
        "linear_probe_accuracy": probe,
        "knn_accuracy": knn,
        "h_score": h,
        "mmd": mmd,
    }


def test_recommend_orders_by_knn_where_the_old_mean_rank_would_not_and_says_why():
    # Given: "winner" leads linear probe, LogME and H-score, "runner-up" leads kNN.
    # The old rule (mean rank of the four) put "winner" first: its mean rank is
    # (1 + 1 + 2 + 1) / 4 = 1.25 against runner-up's (2 + 2 + 1 + 2) / 4 = 1.75.
    ranked = recommend(
        {
            "weak": _scores(-0.90, 0.60, 0.50, 1.0),
            "runner-up": _scores(-0.50, 0.90, 0.85, 4.0),
            "winner": _scores(-0.41, 0.93, 0.80, 5.0),
        }
    )

    # Then: kNN decides, so the order is runner-up (0.85), winner (0.80), weak (0.50).
    assert [(r.name, r.rank) for r in ranked] == [("runner-up", 1), ("winner", 2), ("weak", 3)]
    assert ranked[0] == Ranked(
        name="runner-up",
        rank=1,
        reason=(
            "Best kNN (0.85), which sets the order; "
            "2nd on linear probe (0.9), LogME (-0.5) and H-score (4)"
        ),
    )
    assert ranked[1].reason == (
        "2nd on kNN (0.8), which sets the order; "
        "best linear probe (0.93), LogME (-0.41) and H-score (5)"
    )
    assert ranked[2].reason.startswith("3rd on kNN (0.5), which sets the order; 3rd on")


def test_recommend_ignores_logme_and_h_score_however_far_apart():
    # LogME, H-score and linear probe favour "shallow", and the old rule followed
    # them (mean rank 1.25 against 1.75); kNN, 0.01 apart, decides alone.
    ranked = recommend(
        {
            "shallow": _scores(0.30, 0.97, 0.94, 0.90, mmd=0.1),
            "deep": _scores(-0.30, 0.96, 0.95, 0.70, mmd=0.2),
        }
    )

    assert [r.name for r in ranked] == ["deep", "shallow"]
    assert ranked[1].reason == (
        "2nd on kNN (0.94), which sets the order; "
        "best linear probe (0.97), LogME (0.3) and H-score (0.9)"
    )


def test_recommend_breaks_a_knn_tie_by_linear_probe_then_mmd_then_name():
    same = _scores(-0.5, 0.8, 0.7, 2.0)
    ranked = recommend(
        {
            "b": {**same, "mmd": 0.2},
            "a": {**same, "mmd": 0.3},
            "d": same,
            "c": same,
            # Same kNN, better linear probe, worst LogME and H-score: first.
            "e": {**same, "linear_probe_accuracy": 0.9, "logme": -2.0, "h_score": 0.1},
            # Best LogME, H-score and linear probe, lower kNN: last.
            "f": _scores(5.0, 0.99, 0.69, 9.0, mmd=0.0),
        }
    )

    assert [r.name for r in ranked] == ["e", "b", "a", "c", "d", "f"]
    assert [r.rank for r in ranked] == [1, 2, 3, 4, 5, 6]
    assert ranked[0].reason.endswith("; tie on kNN broken by linear probe")
    assert ranked[1].reason.endswith("; tie on kNN broken by linear probe, then MMD (0.2)")
    assert ranked[3].reason.endswith(
        "; tie on kNN broken by linear probe, then MMD (missing), then name"
    )
    assert ranked[5].reason.startswith("6th on kNN (0.69), which sets the order; best ")
    assert "tie" not in ranked[5].reason
    three = recommend({"b": {**same, "mmd": 0.2}, "a": {**same, "mmd": 0.3}, "c": same})
    assert [r.name for r in three] == ["b", "a", "c"]
    assert three[0].reason.endswith("; tie on kNN and linear probe broken by MMD (0.2)")
    two_way = recommend({"y": same, "x": same})
    assert [r.name for r in two_way] == ["x", "y"]
    assert two_way[0].reason.endswith("; tie on kNN, linear probe and MMD broken by name")


def test_recommend_never_lets_a_missing_score_help_and_puts_unscored_models_last():
    ranked = recommend(
        {
            "failed": dict.fromkeys(("logme", "knn_accuracy", "h_score")),
            # The best linear probe, LogME and H-score, but no kNN: after every kNN.
            "no-knn": _scores(-0.2, 0.99, float("nan"), 9.0),
            "poor": _scores(-0.9, 0.10, 0.10, 0.1),
            # Ties "complete" on kNN; a missing linear probe loses the tie.
            "no-probe": _scores(-0.1, None, 0.70, 8.0, mmd=0.0),
            "complete": _scores(-0.3, 0.80, 0.70, 3.0, mmd=0.5),
            "only-mmd": {"mmd": 0.0},
        }
    )

    # Unscored ones last, by MMD (missing last) as any tie.
    assert [r.name for r in ranked] == [
        "complete",
        "no-probe",
        "poor",
        "no-knn",
        "only-mmd",
        "failed",
    ]
    assert ranked[1].reason == (
        "Best kNN (0.7), which sets the order; best LogME (-0.1); 2nd on H-score (8);"
        " no linear probe; tie on kNN broken by linear probe"
    )
    assert ranked[3].reason == (
        "No kNN, so ranked after every candidate with one;"
        " best linear probe (0.99) and H-score (9); 2nd on LogME (-0.2)"
    )
    assert ranked[4].reason == "No transferability score available (every probe failed); MMD 0"
    assert ranked[5].reason == "No transferability score available (every probe failed)"


def test_recommend_of_nothing_is_empty():
    assert recommend({}) == []


# --------------------------------------------------------------------------- bad input


def _good():
    return _clustered(12, 3, 2, seed=0)


BAD_INPUTS = {
    "empty": (np.zeros((0, 3)), np.zeros(0, dtype=int), "features are empty"),
    "single class": (_good()[0], np.zeros(12, dtype=int), "single class"),
    "lonely class": (_good()[0], np.r_[np.zeros(6), np.ones(5), 2].astype(int), "only 1"),
    "length mismatch": (_good()[0], _good()[1][:-1], "12 rows but labels have 11"),
    "non-finite": (np.where(np.eye(12, 3) > 0, np.nan, _good()[0]), _good()[1], "NaN or infinite"),
    "fractional labels": (_good()[0], _good()[1] + 0.5, "integer class ids"),
    "1-D features": (_good()[0][:, 0], _good()[1], "must be a 2-D array"),
}
SCORES = {
    "logme": logme,
    "knn_accuracy": knn_accuracy,
    "linear_probe_accuracy": linear_probe_accuracy,
    "h_score": h_score,
    "plain_h_score": lambda f, y: h_score(f, y, regularized=False),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
@pytest.mark.parametrize("score", SCORES, ids=list(SCORES))
def test_every_score_refuses_bad_input_with_a_clear_message(score, case):
    features, labels, message = BAD_INPUTS[case]

    with pytest.raises(ValueError, match=message):
        SCORES[score](features, labels)


def test_logme_refuses_features_whose_gram_matrix_overflows():
    features, labels = _good()

    with pytest.raises(ValueError, match="F\\^T F overflows float64"):
        logme(features * 1e200, labels)


def test_validate_labels_refuses_empty_labels():
    with pytest.raises(ValueError, match="labels are empty"):
        validate_labels(np.array([], dtype=int))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((3, 2)), np.full((3, 2), np.inf), "y contain NaN or infinite"),
        (np.zeros((3, 2)), np.zeros((3, 4)), "same feature dimension, got 2 and 4"),
        (np.zeros((0, 2)), np.zeros((3, 2)), "x are empty"),
    ],
)
def test_mmd_refuses_bad_input_with_a_clear_message(x, y, message):
    with pytest.raises(ValueError, match=message):
        mmd_rbf(x, y)


# ------------------------------------------------------------------- out-of-fold predictions


@pytest.mark.parametrize(
    ("accuracy", "predictions"),
    [(linear_probe_accuracy, linear_probe_predictions), (knn_accuracy, knn_predictions)],
)
def test_out_of_fold_predictions_are_what_the_accuracy_counts(accuracy, predictions):
    x, y = _clustered(90, 6, 3, spread=0.8, seed=4)
    labels = np.array(["spam", "ham", "other"])[y]  # renumbered in sorted order

    predicted = predictions(x, labels, seed=2)

    ids = validate_labels(labels)
    assert predicted.shape == (90,)
    assert set(np.unique(predicted)) <= {0, 1, 2}
    assert accuracy(x, labels, seed=2) == int((predicted == ids).sum()) / 90


def test_score_candidate_gives_the_same_numbers_as_each_score_alone():
    x, y = _clustered(60, 5, 2, spread=1.0, seed=1)
    reference = np.random.default_rng(9).standard_normal((30, 5))

    scored = score_candidate(x, y, reference, seed=3)

    assert scored.values["linear_probe_accuracy"] == linear_probe_accuracy(x, y, seed=3)
    assert scored.values["knn_accuracy"] == knn_accuracy(x, y, seed=3)
    assert scored.values["logme"] == logme(x, y)
    assert scored.linear_correct.mean() == scored.values["linear_probe_accuracy"]
    assert scored.knn_correct.dtype == bool


def test_correctness_packs_into_bits_and_back():
    correct = np.random.default_rng(0).random(20_001) > 0.3

    packed = pack_correct(correct)

    assert len(packed) == 2501
    np.testing.assert_array_equal(unpack_correct(packed, 20_001), correct)
    with pytest.raises(ValueError, match="cannot hold exactly 30000"):
        unpack_correct(packed, 30_000)


# --------------------------------------------------------------------------- paired bootstrap


def test_identical_predictions_are_within_noise():
    correct = np.random.default_rng(0).random(200) > 0.4

    gap = paired_bootstrap(correct, correct.copy())

    assert (gap.difference, gap.low, gap.high, gap.holds) == (0.0, 0.0, 0.0, 1.0)
    assert not gap.separated


def test_a_clearly_better_model_is_separated_and_a_small_edge_is_not():
    rng = np.random.default_rng(1)
    other = rng.random(400) > 0.5  # about 50 % right
    better = other | (rng.random(400) > 0.4)  # right wherever other is, and more
    edge = other.copy()
    edge[np.flatnonzero(~other)[:3]] = True  # three more right answers out of 400

    clear = paired_bootstrap(better, other, seed=0)
    close = paired_bootstrap(edge, other, seed=0)

    assert clear.separated
    assert clear.low > 0.2
    assert clear.holds == 1.0
    assert close.difference == pytest.approx(3 / 400)
    assert not close.separated
    assert close.low <= 0 < close.high
    assert paired_bootstrap(other, better).other_ahead


def test_the_count_bootstrap_matches_resampling_the_examples():
    rng = np.random.default_rng(5)
    a = rng.random(150) > 0.3
    b = rng.random(150) > 0.45
    draws = rng.integers(0, 150, size=(4000, 150))
    naive = (a[draws].mean(axis=1)) - (b[draws].mean(axis=1))

    gap = paired_bootstrap(a, b, resamples=4000, seed=1)

    assert gap.low == pytest.approx(np.quantile(naive, 0.025), abs=0.015)
    assert gap.high == pytest.approx(np.quantile(naive, 0.975), abs=0.015)
    assert gap.holds == pytest.approx(np.mean(naive >= 0), abs=0.02)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)


@pytest.mark.parametrize(
    ("a", "b", "options", "message"),
    [
        (np.ones(3), np.ones(4), {}, "same length"),
        (np.ones((2, 2)), np.ones((2, 2)), {}, "1-D"),
        (np.ones(0), np.ones(0), {}, "no examples"),
        (np.ones(3), np.ones(3), {"resamples": 0}, "resamples must be at least 1"),
        (np.ones(3), np.ones(3), {"level": 1.0}, "level must be between 0 and 1"),
    ],
)
def test_paired_bootstrap_refuses_bad_input_with_a_clear_message(a, b, options, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, **options)


def test_two_identical_feature_sets_are_within_noise_and_a_clearly_better_one_is_not():
    x, y = _clustered(120, 8, 3, spread=2.5, seed=3)
    noise = np.random.default_rng(8).standard_normal((120, 8))
    correct = {
        name: linear_probe_predictions(features, y, seed=0) == validate_labels(y)
        for name, features in (("good", x), ("twin", x.copy()), ("noise", noise))
    }

    verdict = ranking_confidence(["good", "twin", "noise"], correct)

    assert verdict.near == ["good", "twin"]
    assert not verdict.clear
    assert verdict.gaps["noise"].separated
    assert verdict.summary() == (
        "good and twin are within noise of each other on this sample; "
        "fine-tune them briefly to decide (bake-off)."
    )
    alone = ranking_confidence(["good", "noise"], correct)
    assert alone.clear
    assert alone.summary().startswith("good is ahead of every other candidate beyond noise")


def test_a_candidate_ahead_of_the_top_on_accuracy_is_named():
    rng = np.random.default_rng(2)
    weak = rng.random(300) > 0.6
    strong = weak | (rng.random(300) > 0.3)

    # kNN leads the ranking, so the first place can be the weaker linear probe.
    verdict = ranking_confidence(["weak", "strong"], {"weak": weak, "strong": strong})

    assert verdict.near == ["weak", "strong"]
    assert verdict.ahead == ["strong"]
    assert "On linear-probe accuracy alone strong is ahead of weak beyond noise" in (
        verdict.summary()
    )


# --------------------------------------------------------------------------- budget

COSTS = {
    "big": {"parameters": 110_000_000, "latency_ms": 30.0},
    "mid": {"parameters": 22_700_000, "latency_ms": 8.0},
    "small": {"parameters": 4_400_000, "latency_ms": 2.5},
}


def test_the_best_within_budget_is_the_best_ranked_candidate_meeting_every_limit():
    pick = best_within_budget(
        ["big", "mid", "small"], COSTS, max_parameters=50_000_000, max_latency_ms=5
    )

    assert (pick.name, pick.rank) == ("small", 3)
    assert pick.misses == {
        "big": [
            "110.0M parameters, over the 50.0M limit",
            "30 ms CPU latency, over the 5 ms limit",
        ],
        "mid": ["8 ms CPU latency, over the 5 ms limit"],
    }
    assert pick.summary.startswith(
        "Best within the budget (at most 50.0M parameters and at most 5 ms CPU latency per "
        "example): small, ranked 3rd. Ranked above it but over budget: big ("
    )


def test_a_limit_is_met_at_equality_and_the_top_one_may_fit():
    pick = best_within_budget(["mid", "big"], COSTS, max_parameters=22_700_000)

    assert (pick.name, pick.rank, pick.misses) == ("mid", 1, {"big": [pick.misses["big"][0]]})
    assert pick.summary == "mid, ranked first, fits the budget (at most 22.7M parameters)."


def test_when_none_fits_the_budget_says_which_limit_excluded_what():
    costs = {**COSTS, "odd": {"parameters": None, "latency_ms": None}}

    pick = best_within_budget(["big", "odd"], costs, max_latency_ms=1)

    assert pick.name is None
    assert pick.rank is None
    assert pick.summary == (
        "No candidate fits the budget (at most 1 ms CPU latency per example). "
        "big: 30 ms CPU latency, over the 1 ms limit; odd: CPU latency not measured."
    )


def test_without_limits_there_is_no_budget_pick_and_close_counts_are_written_exactly():
    assert best_within_budget(["big"], COSTS) is None
    pick = best_within_budget(["big"], {"big": {"parameters": 10_040_000}}, max_parameters=10**7)
    assert pick.misses["big"] == ["10,040,000 parameters, over the 10,000,000 limit"]
