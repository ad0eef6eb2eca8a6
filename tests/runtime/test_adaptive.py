"""AdaFocusV3 early termination: real skipping, counted; identical results in every schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.runtime.toys import EXIT_GFLOPS, SIZE, TF, S, adaptive_bundle
from videploy.bundle.manifest import BatchRange, read_manifest
from videploy.errors import VideployError
from videploy.runtime.adaptive import AdaptiveRunner
from videploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

N = 13


@pytest.fixture(scope="module")
def videos() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((N, S, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(videos, toy_adafocus) -> np.ndarray:
    """Logits of every exit for every video, from the PyTorch modules directly: (N, Tf+1, C)."""
    return toy_adafocus.full_exits(torch.from_numpy(videos)).numpy()


def _entropy(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -(np.exp(logp) * logp).sum(-1)


@pytest.fixture(scope="module")
def thresholds(reference) -> list[float]:
    """Per-exit thresholds in the widest gap near the middle of the entropies (no near-ties)."""
    ent = _entropy(reference.astype(np.float64))  # (N, Tf+1)
    eta = []
    for t in range(TF + 1):
        e = np.sort(ent[:, t])
        gaps = [(e[i + 1] - e[i], i) for i in range(N // 4, 3 * N // 4)]
        _, i = max(gaps)
        eta.append(float((e[i] + e[i + 1]) / 2))
    return eta


def runner_for(bundle) -> AdaptiveRunner:
    return AdaptiveRunner(OnnxRuntimeBackend(bundle, threads=1))


def expected_exits(reference: np.ndarray, eta: list[float]) -> list[int]:
    ent = _entropy(reference.astype(np.float64))
    out = []
    for i in range(len(ent)):
        e = next((t for t in range(TF + 1) if ent[i, t] <= eta[t]), TF)
        out.append(e)
    return out


def test_work_done_equals_steps_taken(adaptive_dir, videos, reference, thresholds):
    r = runner_for(adaptive_dir)
    outcomes = r.run(list(videos), thresholds=thresholds, batch_size=4)
    exits = [oc.exit for oc in outcomes]
    assert exits == expected_exits(reference, thresholds)
    assert set(exits) == set(range(TF + 1)), "the thresholds should make videos exit at every exit"
    c = r.backend.counters
    assert c.rows["glance"] == N
    assert c.rows["policy"] == sum(e > 0 for e in exits)  # policy only for videos past the glance
    assert c.rows["local"] == sum(exits)  # one local row per step a video took, no more
    for oc, i in zip(outcomes, range(N)):
        assert oc.gflops == EXIT_GFLOPS[oc.exit]
        assert len(oc.cubes) == oc.exit and len(oc.entropies) == oc.exit + 1
        np.testing.assert_allclose(oc.logits, reference[i, oc.exit], rtol=1e-5, atol=1e-5)
        assert all(0 <= s < S for c in oc.cubes for s in c.sampled)
        assert [c.step for c in oc.cubes] == list(range(1, oc.exit + 1))


def test_no_early_exit_equals_full_model(adaptive_dir, videos, reference):
    r = runner_for(adaptive_dir)
    outcomes = r.run(list(videos), thresholds=[-math.inf] * (TF + 1))
    assert [oc.exit for oc in outcomes] == [TF] * N
    np.testing.assert_allclose(np.stack([oc.logits for oc in outcomes]), reference[:, TF], rtol=1e-5, atol=1e-5)
    assert r.backend.counters.rows["local"] == N * TF
    # entropies of all exits come out too (what the budget solver needs)
    np.testing.assert_allclose(np.array([oc.entropies for oc in outcomes]), _entropy(reference.astype(np.float64)), rtol=1e-4, atol=1e-5)


def test_glance_exit_runs_no_local_step(adaptive_dir, videos, reference):
    r = runner_for(adaptive_dir)
    outcomes = r.run(list(videos), thresholds=[math.inf] + [-math.inf] * TF)
    assert [oc.exit for oc in outcomes] == [0] * N
    assert r.backend.counters.calls == {"glance": 2}  # 13 videos in groups of the bundle's max batch 8; nothing else ran
    np.testing.assert_allclose(np.stack([oc.logits for oc in outcomes]), reference[:, 0], rtol=1e-5, atol=1e-5)
    assert all(oc.gflops == EXIT_GFLOPS[0] and oc.cubes == () for oc in outcomes)


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_identical_results_in_every_schedule(adaptive_dir, videos, reference, thresholds, continuous, batch_size):
    r = runner_for(adaptive_dir)
    outcomes = r.run(list(videos), thresholds=thresholds, batch_size=batch_size, continuous=continuous)
    assert [oc.exit for oc in outcomes] == expected_exits(reference, thresholds)
    for i, oc in enumerate(outcomes):
        np.testing.assert_allclose(oc.logits, reference[i, oc.exit], rtol=1e-5, atol=1e-5)
    assert r.backend.counters.rows["local"] == sum(oc.exit for oc in outcomes)


class Spy:
    """Wraps a backend's run to record every local call's steps."""

    def __init__(self, backend):
        self.steps: list[list[int]] = []
        self._run = backend.run

        def run(role, inputs, fetch=None):
            if role == "local":
                self.steps.append(inputs["step"].tolist())
            return self._run(role, inputs, fetch=fetch)

        backend.run = run


def test_batched_mode_compacts_the_batch(adaptive_dir, videos, thresholds):
    r = runner_for(adaptive_dir)
    spy = Spy(r.backend)
    outcomes = r.run(list(videos[:8]), thresholds=thresholds, batch_size=8, continuous=False)
    sizes = [len(s) for s in spy.steps]
    active_after_policy = sum(oc.exit > 0 for oc in outcomes)
    assert sizes[0] == active_after_policy
    assert sizes == [sum(oc.exit > t for oc in outcomes) for t in range(len(sizes))]  # exactly the still-active ones
    assert all(len(set(s)) == 1 for s in spy.steps)  # one group: everyone at the same step


def test_continuous_mode_keeps_the_batch_full_with_mixed_steps(adaptive_dir, videos, thresholds):
    r = runner_for(adaptive_dir)
    spy = Spy(r.backend)
    outcomes = r.run(list(videos), thresholds=thresholds, batch_size=4, continuous=True)
    assert any(len(set(s)) > 1 for s in spy.steps), "newcomers should join videos already at later steps"
    # while videos are waiting, the local batch is full
    total_local = sum(oc.exit for oc in outcomes)
    sizes = [len(s) for s in spy.steps]
    assert sum(sizes) == total_local
    # full (4 rows) until the stream runs dry, then draining: never a gap while videos wait
    assert sizes[0] == 4 and sizes.count(4) >= 3
    assert all(a >= b for a, b in zip(sizes, sizes[1:])), sizes
    batched = runner_for(adaptive_dir)
    spy_b = Spy(batched.backend)
    batched.run(list(videos), thresholds=thresholds, batch_size=4, continuous=False)
    assert len(spy.steps) < len(spy_b.steps)  # fewer, fuller local calls than the batched schedule
    default = runner_for(adaptive_dir)
    spy_d = Spy(default.backend)
    default.run(list(videos), thresholds=thresholds, batch_size=4)
    assert spy_d.steps == spy.steps  # continuous is the default schedule


def test_threshold_sources_and_errors(tmp_path, toy_adafocus, videos, reference):
    from_manifest = [math.inf, 0.0, 0.0, 0.0]
    bundle = adaptive_bundle(tmp_path / "b", toy_adafocus, thresholds=from_manifest)
    r = runner_for(bundle)
    assert r.thresholds().tolist() == from_manifest
    assert [oc.exit for oc in r.run(list(videos[:3]))] == [0, 0, 0]  # the manifest's eta_0 = inf
    assert [oc.exit for oc in r.run(list(videos[:3]), thresholds=[-math.inf] * 4)] == [TF] * 3  # the call wins
    with pytest.raises(VideployError, match="needs 4 thresholds, got 2"):
        r.run(list(videos[:1]), thresholds=[1.0, 2.0])
    with pytest.raises(VideployError, match="must be numbers"):
        r.run(list(videos[:1]), thresholds=[float("nan")] * 4)
    # onnxruntime runs the batch-dynamic graphs: the bundle's (TensorRT profile) maximum is no limit
    assert [oc.exit for oc in r.run(list(videos[:10]), thresholds=[-math.inf] * 4, batch_size=10)] == [TF] * 10
    with pytest.raises(VideployError, match="between 1 and the bundle's maximum 1024"):
        r.run(list(videos[:1]), batch_size=0)
    with pytest.raises(VideployError, match="must be \\(6, 3, H, W\\)"):
        r.run([videos[0][:3]])


def test_fixed_batch_bundle_pads(tmp_path, toy_adafocus, videos, reference, thresholds):
    bundle = adaptive_bundle(tmp_path / "fixed", toy_adafocus, batch=BatchRange(3, 3, 3))
    r = runner_for(bundle)
    outcomes = r.run(list(videos[:5]), thresholds=thresholds, continuous=True)
    assert [oc.exit for oc in outcomes] == expected_exits(reference[:5], thresholds)
    for i, oc in enumerate(outcomes):
        np.testing.assert_allclose(oc.logits, reference[i, oc.exit], rtol=1e-5, atol=1e-5)
    assert all(rows % 3 == 0 for rows in r.backend.counters.rows.values())  # every call padded to 3


def test_not_adaptive_bundle(static_dir):
    read_manifest(static_dir)
    with pytest.raises(VideployError, match="not an adaptive"):
        AdaptiveRunner(OnnxRuntimeBackend(static_dir))


def test_exit_is_the_same_in_every_batch_for_a_threshold_exactly_at_a_videos_value(adaptive_dir, videos):
    """Knife edge: eta_t set exactly at one video's criterion (as calibration places thresholds); that
    video stops at exit t whatever batch it runs in, alone or with others, static or continuous."""
    r = runner_for(adaptive_dir)
    never = [-math.inf] * (TF + 1)
    alone = r.run([videos[4]], thresholds=never)[0]
    for t in range(TF):
        eta = [-math.inf] * (TF + 1)
        eta[t] = alone.entropies[t]  # exactly at the value, as the runtime computed it at batch 1
        seen = set()
        for bs, continuous in ((1, False), (2, False), (5, False), (8, False), (3, True)):
            batch = [videos[(4 + j) % N] for j in range(bs)][::-1]  # video 4 last: other rows first
            outcome = r.run(batch, thresholds=eta, batch_size=bs, continuous=continuous)[-1]
            seen.add(outcome.exit)
            assert outcome.entropies[: t + 1] == alone.entropies[: t + 1]  # bit-identical criterion values
        assert seen == {t}


def toy_adafocus_glance_indices():
    from tests.runtime.toys import GLANCE_INDICES

    return GLANCE_INDICES


def test_random_policy_replaces_the_policy_graph(adaptive_dir, videos, reference, toy_adafocus):
    """The paper's Table 5 baseline: uniformly random cubes (distinct frames in time order, actions in
    [0, 1)), seeded; the glance and local graphs run exactly as with the learned policy."""
    from tests.runtime.toys import D

    backend = OnnxRuntimeBackend(adaptive_dir, threads=1)
    runner = AdaptiveRunner(backend, policy="random", seed=3)
    never = [-math.inf] * (TF + 1)
    with backend.recording() as calls:
        outcomes = runner.run(list(videos), thresholds=never, batch_size=4)
    assert "policy" not in {c.role for c in calls}  # the policy graph never ran
    for oc in outcomes:
        sampled = [c.sampled[0] for c in oc.cubes]
        assert sampled == sorted(set(sampled)) and all(0 <= i < S for i in sampled)
        assert all(0 <= a < 1 for c in oc.cubes for a in c.action)
    # the glance exit is the learned run's; the last exit is the local graph on the drawn cubes
    glance_only = runner.run(list(videos), thresholds=[math.inf] * (TF + 1))
    np.testing.assert_allclose(np.stack([oc.logits for oc in glance_only]), reference[:, 0], rtol=1e-4, atol=1e-5)
    gr = toy_adafocus.deploy_graphs()
    v = torch.from_numpy(videos)
    with torch.no_grad():
        _, _, gs, _, _ = gr["glance"](v[:, list(toy_adafocus_glance_indices())])
        ls = torch.zeros(v.shape[0], D)
        for t in range(TF):
            frames = torch.stack([v[b, list(outcomes[b].cubes[t].sampled)] for b in range(len(videos))])
            actions = torch.tensor([outcomes[b].cubes[t].action for b in range(len(videos))], dtype=torch.float32)
            lg, _, ls = gr["local"](frames, actions, torch.full((len(videos),), t, dtype=torch.int64), ls, gs)
    np.testing.assert_allclose(np.stack([oc.logits for oc in outcomes]), lg.numpy(), rtol=1e-4, atol=1e-5)
    # seeded: the same seed draws the same cubes, another seed others
    again = AdaptiveRunner(OnnxRuntimeBackend(adaptive_dir, threads=1), policy="random", seed=3).run(list(videos), thresholds=never)
    other = AdaptiveRunner(OnnxRuntimeBackend(adaptive_dir, threads=1), policy="random", seed=4).run(list(videos), thresholds=never)
    assert [c.action for oc in again for c in oc.cubes] == [c.action for oc in outcomes for c in oc.cubes]
    assert [c.action for oc in other for c in oc.cubes] != [c.action for oc in outcomes for c in oc.cubes]
    with pytest.raises(VideployError, match="policy must be one of learned, random"):
        AdaptiveRunner(backend, policy="uniform")
