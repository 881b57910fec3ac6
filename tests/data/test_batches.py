"""In-memory batches: sharding over ranks, epochs as pure functions of the seed, state for resuming."""

from types import SimpleNamespace

import pytest
import torch

from resablate.data import SyntheticData, TensorBatches


def tensors(n):
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n)


def labels_of(batches):
    return [y.tolist() for _, y in batches]


def test_train_epoch_is_a_seeded_permutation_without_the_last_incomplete_batch():
    loader = TensorBatches(*tensors(50), 8, train=True, seed=3)
    assert len(loader) == 6
    first, second = labels_of(loader), labels_of(loader)
    assert [len(b) for b in first] == [8] * 6
    assert len(set(sum(first, []))) == 48 and sum(first, []) != sorted(sum(first, []))
    assert first != second  # a new pass is the next epoch
    assert first == labels_of(TensorBatches(*tensors(50), 8, train=True, seed=3))
    assert first != labels_of(TensorBatches(*tensors(50), 8, train=True, seed=4))


def test_train_ranks_take_disjoint_slices_of_the_same_global_batch():
    whole = labels_of(TensorBatches(*tensors(50), 8, train=True, seed=1))
    ranks = [labels_of(TensorBatches(*tensors(50), 8, train=True, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert all(len(r) == len(whole) for r in ranks)
    for i, batch in enumerate(whole):
        assert ranks[0][i] + ranks[1][i] == batch and len(ranks[0][i]) == 4


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_sees_every_sample_once_over_all_ranks(world_size):
    seen = []
    for rank in range(world_size):
        loader = TensorBatches(*tensors(23), 6, train=False, rank=rank, world_size=world_size)
        batches = labels_of(loader)
        assert len(batches) == len(loader) and all(len(b) <= 6 // world_size for b in batches)
        seen += sum(batches, [])
    assert sorted(seen) == list(range(23)) and len(seen) == 23


def test_global_batch_must_divide_over_ranks():
    with pytest.raises(ValueError, match=r"batch_size=10 must be divisible by the world size 4"):
        TensorBatches(*tensors(50), 10, train=True, world_size=4)


def test_state_dict_resumes_mid_epoch_and_at_epoch_end():
    reference = TensorBatches(*tensors(50), 8, train=True, seed=0)
    stream = labels_of(reference) + labels_of(reference)  # epochs 0 and 1
    for stop in (3, 6):  # mid-epoch, and after the last batch of epoch 0
        loader = TensorBatches(*tensors(50), 8, train=True, seed=0)
        iterator = iter(loader)
        head = [next(iterator)[1].tolist() for _ in range(stop)]
        resumed = TensorBatches(*tensors(50), 8, train=True, seed=0)
        resumed.load_state_dict(loader.state_dict())
        rest = labels_of(resumed)
        assert len(rest) == (6 - stop if stop < 6 else 6)  # the rest of epoch 0, or all of epoch 1
        assert head + rest == stream[: stop + len(rest)]


def test_abandoned_pass_starts_the_next_epoch_like_a_dataloader():
    loader = TensorBatches(*tensors(50), 8, train=True, seed=0)
    next(iter(loader))
    iter(loader)  # created, never started: starts nothing
    assert loader.state_dict() == {"epoch": 0, "batch": 1}
    second = labels_of(loader)
    assert loader.state_dict() == {"epoch": 1, "batch": 6} and len(second) == 6


def fake_trainer(rank, world_size, training=True):
    return SimpleNamespace(global_rank=rank, world_size=world_size, training=training,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")))


def augmented_epoch(world_size, rank):
    dm = SyntheticData(num_samples=64, image_size=8, batch_size=16, seed=5)
    dm.trainer = fake_trainer(rank, world_size)
    dm.setup("fit")
    return [dm.on_after_batch_transfer(batch, 0) for batch in dm.train_dataloader()]


def test_augmented_global_batch_does_not_depend_on_the_world_size():
    whole = augmented_epoch(1, 0)
    halves = [augmented_epoch(2, r) for r in range(2)]
    for i, (x, y) in enumerate(whole):
        torch.testing.assert_close(torch.cat([halves[0][i][0], halves[1][i][0]]), x, rtol=0, atol=0)
        assert torch.equal(torch.cat([halves[0][i][1], halves[1][i][1]]), y)


def test_mean_subtraction_always_augmentation_only_in_training():
    dm = SyntheticData(num_samples=64, image_size=8, batch_size=16)
    dm.trainer = fake_trainer(0, 1, training=False)
    dm.setup("fit")
    images, labels = next(iter(dm.test_dataloader()))
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    torch.testing.assert_close(x, images.float() / 255 - dm.mean)
    train_batch = next(iter(dm.train_dataloader()))
    plain, _ = dm.on_after_batch_transfer(train_batch, 0)
    dm.trainer.training = True
    augmented, _ = dm.on_after_batch_transfer(train_batch, 0)
    assert not torch.equal(plain, augmented)
    torch.testing.assert_close(dm.mean, dm._train.images.double().mean(0).div(255).float())


def test_val_loaders_are_val_then_test_with_a_split():
    dm = SyntheticData(num_samples=100, image_size=4, batch_size=10, val_size=20)
    dm.setup("fit")
    val, test = dm.val_dataloader()
    assert (sum(len(y) for _, y in val), sum(len(y) for _, y in test)) == (20, 20)
    no_split = SyntheticData(num_samples=100, image_size=4, batch_size=10)
    no_split.setup("fit")
    assert isinstance(no_split.val_dataloader(), TensorBatches) and no_split.val_size == 0
