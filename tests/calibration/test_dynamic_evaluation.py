"""The dynamic evaluation against an independent restatement of the official one, and the budget choice."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from videploy.calibration import budget_search, choose_for_budget, dynamic_evaluation
from videploy.calibration.dynamic_evaluation import fixed_exit_points
from videploy.calibration.exit_curve import Curve, write_curve
from videploy.calibration.exit_thresholds import (
    _normalised,
    _torch_cpu_sum_f32,
    exit_counts,
    official_exit_fractions,
)
from videploy.errors import VideployError


# --- the official evaluation, restated from its description (PyTorch, float32 throughout) --------
def official_exit_counts(train: np.ndarray, val: np.ndarray, criterion: str) -> np.ndarray:
    """(19, exits): held-out videos leaving at each exit for q = 1/20 .. 19/20.

    Criterion as the official code: negated entropy sum(p log p) of the float32 softmax, or the
    largest logit; higher is more confident. Per q: p_t = exp(t log q) normalised (by the search)
    and normalised again (by the fitter); for each exit but the last, if n = floor(N * p_t) > 0 the
    threshold is the value of the n-th most confident train video not yet taken (descending sort),
    and those n are taken, else 1e8; the last threshold is -1e8; a held-out video leaves at the first
    exit whose value >= threshold.
    """
    torch = pytest.importorskip("torch")
    tr = torch.from_numpy(np.ascontiguousarray(train.transpose(1, 0, 2), dtype=np.float32))  # (exits, videos, classes)
    va = torch.from_numpy(np.ascontiguousarray(val.transpose(1, 0, 2), dtype=np.float32))

    def value(x):
        if criterion == "confidence":
            return x.max(dim=-1).values
        prob = torch.softmax(x, dim=-1)
        return (prob * torch.log(prob)).sum(dim=-1)

    exits, n = tr.shape[0], tr.shape[1]
    tv = [value(tr[k]) for k in range(exits)]
    vv = torch.stack([value(va[k]) for k in range(exits)])
    order = [torch.sort(tv[k], descending=True).indices for k in range(exits)]
    rows = []
    for k20 in range(1, 20):
        q = torch.tensor([k20 / 20], dtype=torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = torch.exp(torch.log(q) * torch.range(0, exits - 1))
        p = p / p.sum()
        p = p / p.sum()
        taken = torch.zeros(n, dtype=torch.bool)
        thr = torch.full((exits,), 1e8)
        for k in range(exits - 1):
            count = math.floor(n * p[k])
            if count > 0:
                rest = order[k][~taken[order[k]]]
                thr[k] = tv[k][rest[count - 1]]
                taken[rest[:count]] = True
        thr[-1] = -1e8
        first = (vv >= thr[:, None]).int().argmax(dim=0)
        rows.append(np.bincount(first.numpy(), minlength=exits))
    return np.stack(rows)


def exit_logits(rng, videos: int, exits: int, classes: int, scale: float) -> np.ndarray:
    """Random exit logits, later exits sharper and more consistent, as in a trained model."""
    base = rng.normal(size=(videos, 1, classes))
    noise = rng.normal(size=(videos, exits, classes)) * np.linspace(1.0, 0.2, exits)[None, :, None]
    sharp = np.linspace(0.6, 1.4, exits)[None, :, None]
    return ((base + noise) * sharp * scale).astype(np.float32)


@pytest.mark.parametrize("criterion", ["entropy", "confidence"])
@pytest.mark.parametrize("n_train, n_val, exits, classes, scale", [(1000, 900, 17, 30, 2.0), (400, 333, 17, 10, 4.0), (200, 180, 4, 7, 1.0), (97, 50, 5, 5, 3.0)])
def test_counts_match_the_official_evaluation_for_every_q(criterion, n_train, n_val, exits, classes, scale):
    rng = np.random.default_rng(n_train + exits)
    train = exit_logits(rng, n_train, exits, classes, scale)
    val = exit_logits(rng, n_val, exits, classes, scale)
    labels = rng.integers(0, classes, size=n_val)
    points = dynamic_evaluation(train, val, labels, np.linspace(1.0, 5.0, exits), criterion=criterion)
    assert [p.q for p in points] == [k / 20 for k in range(1, 20)]
    ours = np.array([p.exit_counts for p in points])
    np.testing.assert_array_equal(ours, official_exit_counts(train, val, criterion))


def test_exit_fractions_are_the_official_float32_values():
    torch = pytest.importorskip("torch")
    for exits in range(1, 65):
        for k20 in range(1, 20):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = torch.exp(torch.log(torch.tensor([k20 / 20])) * torch.range(0, exits - 1))
            p = p / p.sum()
            ours = official_exit_fractions(k20 / 20, exits)
            assert ours.tobytes() == p.numpy().tobytes(), (exits, k20)
            p = p / p.sum()
            assert _normalised(ours).tobytes() == p.numpy().tobytes(), (exits, k20)
            for n in (100, 1000, 2000, 4926):  # N * p_t is often an integer up to rounding
                assert exit_counts(n, _normalised(ours)).tolist() == [math.floor(n * x) for x in p], (exits, k20, n)
    rng = np.random.default_rng(0)
    for size in list(range(1, 70)) + [127, 128, 129, 255, 511]:
        x = (rng.random(size) * rng.choice([1e-3, 1.0, 1e3])).astype(np.float32)
        assert _torch_cpu_sum_f32(x) == torch.from_numpy(x).sum().item(), size


def test_accuracy_gflops_and_random_baseline():
    # 3 exits, 4 held-out videos; video i is right only at exit i % 3
    val = np.full((4, 3, 3), -5.0, dtype=np.float32)
    labels = np.array([0, 1, 2, 0])
    for i in range(4):
        val[i, :, (labels[i] + 1) % 3] = 5.0  # confidently wrong ...
        val[i, i % 3, :] = -5.0
        val[i, i % 3, labels[i]] = 5.0  # ... except at exit i % 3
    train = val.copy()
    cost = [1.0, 2.0, 4.0]
    pts = dynamic_evaluation(train, val, labels, cost, qs=[0.5])
    p = pts[0]
    # q = 1/2: p = (4, 2, 1)/7 -> floor(4 * 4/7) = 2 videos at exit 0; every video is equally confident everywhere
    assert p.exit_counts == (4, 0, 0) and p.gflops == 1.0  # ties stop: all 4 share exit 0's threshold value
    assert p.accuracy == 0.5  # videos 0 and 3 are right at exit 0
    exit_acc = np.array([0.5, 0.25, 0.25])
    assert p.random_accuracy == pytest.approx(float(np.array(p.exit_counts) @ exit_acc) / 4)
    assert fixed_exit_points(val, labels, cost) == [(1.0, 0.5), (2.0, 0.25), (4.0, 0.25)]


def constructed(rng, videos: int, easy_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Easy videos: confidently right at every exit. Hard videos: unsure and wrong at the glance,
    right from exit 1 on. The best use of a budget: easy ones stop at the glance, hard ones at exit 1."""
    classes, exits = 5, 4
    labels = rng.integers(0, classes, size=videos)
    easy = np.arange(videos) < round(videos * easy_share)
    logits = rng.normal(scale=0.05, size=(videos, exits, classes)).astype(np.float32)
    rows = np.arange(videos)
    for t in range(exits):
        logits[rows, t, labels] += np.where(easy, 8.0, 0.0 if t == 0 else 3.0 + t)
    wrong = (labels + 1) % classes
    logits[~easy, 0, wrong[~easy]] += 0.5  # a slight wrong lead at the glance
    perm = rng.permutation(videos)
    return logits[perm], labels[perm]


def test_budget_search_finds_the_known_optimum_within_5_percent():
    rng = np.random.default_rng(3)
    cost = np.array([1.0, 2.0, 3.0, 4.0])
    train, _ = constructed(rng, 300, 0.4)
    val, labels = constructed(rng, 250, 0.4)
    optimum = 0.4 * cost[0] + 0.6 * cost[1]  # 1.6 GFLOPs, 100% accuracy
    chosen, points = budget_search(train, val, labels, cost, optimum)
    assert chosen.accuracy == 1.0
    assert chosen.gflops <= optimum and chosen.gflops >= 0.95 * optimum
    assert chosen.exit_counts[0] == 100 and chosen.exit_counts[1] == 150
    # larger budgets: still the best accuracy, spending within 5% of the budget
    for budget in (2.2, 2.9, 3.5):
        chosen, _ = budget_search(train, val, labels, cost, budget)
        assert chosen.accuracy == 1.0 and 0.95 * budget <= chosen.gflops <= budget
    # below the optimum the accuracy must drop, and the budget still holds
    chosen, _ = budget_search(train, val, labels, cost, 1.3)
    assert chosen.gflops <= 1.3 and chosen.accuracy < 1.0
    with pytest.raises(VideployError, match="raise --budget"):
        choose_for_budget(points, 0.5)


def test_budget_search_on_random_logits_spends_the_budget():
    rng = np.random.default_rng(5)
    train = exit_logits(rng, 300, 17, 20, 2.0)
    val = exit_logits(rng, 300, 17, 20, 2.0)
    labels = rng.integers(0, 20, size=300)
    cost = np.linspace(1.0, 9.0, 17)
    for budget in (1.5, 5.0):
        chosen, points = budget_search(train, val, labels, cost, budget, criterion="entropy")
        assert chosen.gflops <= budget
        assert chosen.accuracy == max(p.accuracy for p in points if p.gflops <= budget)


def test_input_errors():
    x = np.zeros((4, 3, 2), dtype=np.float32)
    with pytest.raises(VideployError, match=r"\(videos, exits, classes\)"):
        dynamic_evaluation(x[0], x, [0] * 4, [1, 2, 3])
    with pytest.raises(VideployError, match="same exits and classes"):
        dynamic_evaluation(x, x[:, :2], [0] * 4, [1, 2])
    with pytest.raises(VideployError, match="class indices in"):
        dynamic_evaluation(x, x, [0, 1, 2, 3], [1, 2, 3])
    with pytest.raises(VideployError, match="one cumulative cost per exit"):
        dynamic_evaluation(x, x, [0] * 4, [1, 2])
    with pytest.raises(VideployError, match="unknown exit criterion"):
        dynamic_evaluation(x, x, [0] * 4, [1, 2, 3], criterion="margin")


def test_curve_files(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    train, val = exit_logits(rng, 60, 4, 5, 2.0), exit_logits(rng, 40, 4, 5, 2.0)
    labels = rng.integers(0, 5, size=40)
    cost = [0.5, 1.0, 1.5, 2.0]
    points = dynamic_evaluation(train, val, labels, cost)
    curve = Curve("toy", "entropy", 60, 40, tuple(points), tuple(fixed_exit_points(val, labels, cost)))
    paths = write_curve(curve, tmp_path / "out" / "curve.png")
    assert sorted(paths) == ["csv", "json", "png"] and all(p.is_file() for p in paths.values())
    assert paths["json"].name == "curve.json"
    doc = json.loads(paths["json"].read_text())
    assert doc["glance_only"]["gflops"] == 0.5 and doc["all_steps"]["gflops"] == 2.0 and len(doc["dynamic"]) == 19
    assert doc["dynamic"][0]["exit_counts"] == list(points[0].exit_counts)
    assert doc["dynamic"][0]["thresholds"][-1] == "inf"  # strict JSON
    lines = paths["csv"].read_text().splitlines()
    assert lines[0].startswith("kind,q,gflops,accuracy,random_accuracy") and len(lines) == 1 + 4 + 19
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
