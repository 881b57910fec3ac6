"""The batched pad-crop-flip equals the per-image definition of R1 4.2, and its draws are seeded."""

import torch
import torch.nn.functional as F

from resablate.data import draw_pad_crop_flip, pad_crop_flip, random_pad_crop_flip


def reference(image, offset_y, offset_x, flip, pad=4):
    """One image: zero-pad `pad` on each side, crop HxW at (offset_y, offset_x), flip left-right if `flip`."""
    _, h, w = image.shape
    crop = F.pad(image, (pad, pad, pad, pad))[:, offset_y : offset_y + h, offset_x : offset_x + w]
    return crop.flip(-1) if flip else crop


def test_batched_equals_per_image_reference():
    x = torch.randn(16, 3, 8, 10)
    offsets_y, offsets_x, flips = draw_pad_crop_flip(16, torch.Generator().manual_seed(1))
    offsets_y[:3], offsets_x[:3], flips[:3] = torch.tensor([0, 8, 4]), torch.tensor([8, 0, 4]), torch.tensor([1, 0, 1])
    out = pad_crop_flip(x, offsets_y, offsets_x, flips)
    assert out.shape == x.shape
    for n in range(16):
        torch.testing.assert_close(out[n], reference(x[n], int(offsets_y[n]), int(offsets_x[n]), bool(flips[n])),
                                   rtol=0, atol=0)


def test_centre_offset_without_flip_is_identity_and_padding_is_zero():
    x = torch.randn(4, 1, 6, 6)
    centre = torch.full((4,), 4)
    assert torch.equal(pad_crop_flip(x, centre, centre, torch.zeros(4, dtype=torch.bool)), x)
    corner = pad_crop_flip(x, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long),
                           torch.zeros(4, dtype=torch.bool))
    assert torch.equal(corner[:, :, :4, :], torch.zeros(4, 1, 4, 6))  # the top 4 rows come from the padding
    assert torch.equal(corner[:, :, 4:, 4:], x[:, :, :2, :2])


def test_draws_cover_the_range_and_are_seeded():
    offsets_y, offsets_x, flips = draw_pad_crop_flip(4000, torch.Generator().manual_seed(0))
    assert set(offsets_y.tolist()) == set(range(9)) == set(offsets_x.tolist())
    assert 0.45 < flips.float().mean() < 0.55
    again = draw_pad_crop_flip(4000, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((offsets_y, offsets_x, flips), again))


def test_random_draws_change_the_batch():
    x = torch.randn(32, 3, 32, 32)
    out = random_pad_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    assert torch.equal(out, random_pad_crop_flip(x, torch.Generator().manual_seed(0)))
