"""The non-finite guard: a NaN/Inf gradient leaves weights and optimizer state untouched."""

import copy

import pytest
import torch

from chord.learner.guarded_adamw import GuardedAdamW

pytestmark = pytest.mark.unit


def _model_and_opt():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    opt = GuardedAdamW(model.parameters(), lr=0.1, weight_decay=0.01)
    model(torch.randn(4, 5)).square().mean().backward()
    opt.step()  # one real step so there is optimizer state to protect
    opt.zero_grad()
    return model, opt


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradient_skips_the_step(bad):
    model, opt = _model_and_opt()
    weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    model(torch.randn(4, 5)).square().mean().backward()
    model.bias.grad[1] = bad
    opt.step()
    assert opt.overflow
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    after = opt.state_dict()["state"]
    for i, s in state["state"].items():
        assert all(torch.equal(s[k], after[i][k]) for k in s)
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())  # nothing leaks into the next step


def test_finite_gradient_steps():
    model, opt = _model_and_opt()
    before = model.weight.detach().clone()
    model(torch.randn(4, 5)).square().mean().backward()
    opt.step()
    assert not opt.overflow and not torch.equal(before, model.weight)
    assert int(opt.state_dict()["state"][0]["step"]) == 2
