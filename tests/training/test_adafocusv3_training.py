"""AdaFocusV3 training pieces: the random and learned policies, the deep-feature gradient (Eqs. 5-6),
the summed-exit loss (Eq. 1)."""

from __future__ import annotations

import torch

import videploy.models as vm
from videploy.models.adafocusv3_parts import sample_frame_indices
from videploy.training import adafocusv3 as af

from .conftest import TINY_ADAFOCUS


def _model():
    torch.manual_seed(0)
    return vm.create("adafocusv3", **TINY_ADAFOCUS)


def _video(b=3):
    c = TINY_ADAFOCUS
    return torch.randn(b, c["num_segments"], 3, c["input_size"], c["input_size"], generator=torch.Generator().manual_seed(1))


def test_learned_policy_pieces_equal_the_model_forward():
    m = _model().eval()
    x = _video()
    with torch.no_grad():
        featmap, feat = af.glance(m, x)
        idx, actions, _ = af.learned_policy(m, featmap, feat)
        logits = af.exit_logits(m, feat, af.local_features(m, x, idx, actions))
        ref = m(x)
    tg = TINY_ADAFOCUS["num_glance_segments"]
    torch.testing.assert_close(logits[:, tg - 1 :], ref, rtol=1e-5, atol=1e-5)


def test_random_policy_gives_distinct_ordered_frames():
    m = _model()
    idx, actions = af.random_policy(64, m, torch.Generator().manual_seed(0))
    assert idx.shape == (64, 3) and actions.shape == (64, 3, 4)
    assert bool((idx[:, 1:] > idx[:, :-1]).all()) and int(idx.min()) >= 0 and int(idx.max()) < 8
    assert 0 <= float(actions.min()) and float(actions.max()) <= 1
    assert len({tuple(r) for r in idx.tolist()}) > 10  # really random


def test_focus_positions_are_the_continuous_coordinates_of_the_indices():
    w = torch.softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(2)) * 2, dim=1)
    z = af.focus_positions(w, 16, 4, 3)
    idx = sample_frame_indices(w, 16, 4, 3)
    first = torch.floor(z[:, 0]).long()
    assert torch.equal(first, idx[:, 0])  # the first index is never shifted by the ordering fix
    assert bool((z >= 0).all()) and bool((z <= 16).all())


def test_deep_feature_gradient_reaches_only_the_policy_and_not_the_forward_value():
    m = _model()
    af._set_modes(m, 2)
    af._stage_parameters(m, 2)
    x = _video()
    featmap, feat = af.glance(m, x)
    idx, actions, weights = af.learned_policy(m, featmap, feat)
    z = af.focus_positions(weights, 8, 2, 3)
    local = af.deep_feature_local_features(m, x, idx, actions, z)
    # forward value: independent of the coordinates' value (c - StopGradient(c) = 0)
    same = af.deep_feature_local_features(m, x, idx, actions.detach(), z.detach())
    torch.testing.assert_close(local, same)
    loss = af.summed_exit_loss(af.exit_logits(m, feat, local), torch.arange(3))
    loss.backward()
    spatial = [p.grad for p in m.spatial_policy.parameters()]
    temporal = [p.grad for p in m.temporal_policy.parameters()]
    assert all(g is not None for g in spatial + temporal)
    assert sum(float(g.abs().sum()) for g in spatial) > 0
    assert sum(float(g.abs().sum()) for g in temporal) > 0
    assert all(p.grad is None for p in m.local_CNN.parameters()) and all(p.grad is None for p in m.global_CNN.parameters())


def test_summed_exit_loss_is_the_sum_over_exits():
    logits = torch.randn(4, 5, 10)
    y = torch.tensor([1, 2, 3, 4])
    ref = sum(torch.nn.functional.cross_entropy(logits[:, e], y) for e in range(5))
    torch.testing.assert_close(af.summed_exit_loss(logits, y), ref)


def test_stage_one_trains_encoders_and_classifier_not_the_policy():
    m = _model()
    params = af._stage_parameters(m, 1)
    policy = {id(p) for mod in (m.spatial_policy, m.temporal_policy) for p in mod.parameters()}
    assert params and not any(id(p) in policy for p in params)
    assert {id(p) for p in af._stage_parameters(m, 2)} == policy
