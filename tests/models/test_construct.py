"""R1 section 1's constructed solution (resablate.models.construct.extend): a trained plain-20 extended to plain-56 with
identity layers computes the same function in eval mode (so the same errors), and nearly so in training mode; what
cannot be extended that way is refused, naming why."""

from __future__ import annotations

import pytest
import torch

from resablate.models import build_network
from resablate.models.construct import extend


def trained_like(net):
    """BN statistics and affine parameters away from their initial values, as after training."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    return net


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) - 0.5


@pytest.mark.slow
def test_plain_20_extended_to_plain_56_computes_the_same_function():
    torch.manual_seed(0)
    shallow = trained_like(build_network(depth=20, shortcut="none")).eval()
    deep = extend(shallow, build_network(depth=56, shortcut="none"), [images(64, k) for k in range(4)]).eval()
    assert [len(s) for s in deep.stages] == [9, 9, 9]
    x = images(128, 99)
    with torch.no_grad():
        a, b = shallow(x), deep(x)
    assert torch.equal(a.argmax(1), b.argmax(1))  # the same predictions: the same errors
    assert (a - b).abs().max() < 1e-5 * a.abs().max()
    # Training mode: the added BNs normalise by the batch's own statistics, close to those measured.
    deep.train()
    with torch.no_grad():
        c = deep(images(256, 7))
        shallow.train()
        d = shallow(images(256, 7))
    assert (c - d).abs().max() < 0.2 * d.abs().max()


@pytest.mark.parametrize("shallow,deep,message", [
    ({"depth": 20, "shortcut": "zero_pad"}, {"depth": 56, "shortcut": "zero_pad"}, "extends plain nets"),
    ({"depth": 56, "shortcut": "none"}, {"depth": 20, "shortcut": "none"}, "deeper than this one's"),
    ({"depth": 20, "shortcut": "none", "width_multiplier": 2.0}, {"depth": 56, "shortcut": "none"},
     "differ in more than depth"),
])
def test_what_cannot_be_extended_is_refused(shallow, deep, message):
    with pytest.raises(ValueError, match=message):
        extend(build_network(**shallow), build_network(**deep), [images(8, 0)])
