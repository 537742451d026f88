"""Shared test helpers: a snapshot of everything a model must keep through a pescore_nb call."""
import pytest
import torch


class ModelSnapshot:
    """state_dict, per-module train/eval flags, requires_grad, .grad and hooks of a model."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.training = [m.training for m in model.modules()]
        self.requires_grad = [p.requires_grad for p in model.parameters()]
        self.grads = [p.grad for p in model.parameters()]
        self.hooks = self._hooks()
        self.device = next(model.parameters()).device

    def _hooks(self):
        return [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                for m in self.model.modules()]

    def assert_unchanged(self):
        state = self.model.state_dict()
        assert state.keys() == self.state.keys()
        for key, value in self.state.items():
            assert torch.equal(state[key], value), f"{key} changed"
        assert [m.training for m in self.model.modules()] == self.training
        assert [p.requires_grad for p in self.model.parameters()] == self.requires_grad
        assert all(p.grad is g for p, g in zip(self.model.parameters(), self.grads))
        assert self._hooks() == self.hooks
        assert next(self.model.parameters()).device == self.device


@pytest.fixture
def snapshot():
    return ModelSnapshot
