"""The batched pad-crop-flip equals R1 4.2's per-image definition as torchvision implements it; its draws are seeded.

R1 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal
flip". The reference is torchvision's `RandomCrop(32, padding=4)` followed by a horizontal flip, image by image, with
the offsets and flips our batched version drew. Cropping then flipping at column j equals flipping then cropping at
column 2 * pad - j, and j is uniform over [0, 2 * pad], so both readings of the sentence give the same distribution.
"""

from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from resablate.data import SyntheticData, draw_pad_crop_flip, pad_crop_flip, random_pad_crop_flip
from resablate.data.base import AUGMENT, PAD, seeded_generator


def torchvision_reference(image, offset_y, offset_x, flip, pad=4):
    """One image as torchvision's RandomCrop(size, padding=pad) crops it at (offset_y, offset_x) of the padded image,
    then flipped left-right if `flip` (RandomHorizontalFlip)."""
    _, h, w = image.shape
    crop = TF.crop(TF.pad(image, [pad]), offset_y, offset_x, h, w)
    return TF.hflip(crop) if flip else crop


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (2, 8, 10)], ids=["cifar", "fashion_mnist", "non_square"])
def test_batched_equals_torchvision_per_image(shape):
    x = torch.randn(16, *shape)
    offsets_y, offsets_x, flips = draw_pad_crop_flip(16, torch.Generator().manual_seed(1))
    # the four corners of the padded image, flipped and not, plus the centre
    offsets_y[:5], offsets_x[:5] = torch.tensor([0, 0, 8, 8, 4]), torch.tensor([0, 8, 0, 8, 4])
    flips[:5] = torch.tensor([True, False, True, False, True])
    out = pad_crop_flip(x, offsets_y, offsets_x, flips)
    assert out.shape == x.shape
    for n in range(16):
        expected = torchvision_reference(x[n], int(offsets_y[n]), int(offsets_x[n]), bool(flips[n]))
        torch.testing.assert_close(out[n], expected, rtol=0, atol=0)


def test_torchvision_random_crop_draws_offsets_in_our_range():
    """RandomCrop(32, padding=4) itself, with its own draws: each output is our pad_crop_flip at offsets in [0, 8]."""
    image = torch.randn(3, 32, 32)
    crop = T.RandomCrop(32, padding=4)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        top, left, _, _ = T.RandomCrop.get_params(TF.pad(image, [4]), (32, 32))
        torch.manual_seed(seed)
        expected = crop(image)
        ours = pad_crop_flip(image[None], torch.tensor([top]), torch.tensor([left]), torch.tensor([False]))[0]
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)
        seen.add((top, left))
    assert {t for t, _ in seen} <= set(range(9)) and {left for _, left in seen} <= set(range(9))


def test_data_module_training_batch_is_the_reference_on_the_mean_subtracted_images():
    """What training sees: (x / 255 - mean) padded with zeros, cropped and flipped as drawn for (seed, epoch, batch)."""
    dm = SyntheticData(num_samples=64, image_size=32, batch_size=16, seed=3)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, training=True,
                                 strategy=SimpleNamespace(root_device=torch.device("cpu")))
    dm.setup("fit")
    loader = dm.train_dataloader()
    images, labels = next(iter(loader))
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    epoch, index = loader.last
    offsets_y, offsets_x, flips = draw_pad_crop_flip(16, seeded_generator(3, AUGMENT, epoch, index), PAD)
    normalized = images.float() / 255 - dm.mean
    for n in range(16):
        expected = torchvision_reference(normalized[n], int(offsets_y[n]), int(offsets_x[n]), bool(flips[n]))
        torch.testing.assert_close(x[n], expected, rtol=0, atol=0)
    assert torch.equal(y, labels)
    assert flips.any() and not flips.all()  # both branches were exercised


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
    assert all(torch.equal(a, b) for a, b in zip((offsets_y, offsets_x, flips), again, strict=True))


def test_random_draws_change_the_batch():
    x = torch.randn(32, 3, 32, 32)
    out = random_pad_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    assert torch.equal(out, random_pad_crop_flip(x, torch.Generator().manual_seed(0)))


def test_channels_last_input_gives_the_same_crops():
    """The trainer feeds NHWC batches when channels_last=true; the gather must not depend on the memory layout."""
    x = torch.randn(8, 3, 12, 12)
    draws = draw_pad_crop_flip(8, torch.Generator().manual_seed(2))
    torch.testing.assert_close(pad_crop_flip(x.contiguous(memory_format=torch.channels_last), *draws),
                               pad_crop_flip(x, *draws), rtol=0, atol=0)
