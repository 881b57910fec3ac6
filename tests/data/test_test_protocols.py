"""R1 3.4's ImageNet testing protocols on an ImageFolder tree written here: 10-crop (`data.test_crops=10`) and
fully-convolutional multi-scale testing (`data.test_scales=[...]`) give exactly the hand-computed average for networks
whose outputs are known, and a real network runs through both end to end (the summary names the protocol)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from resablate.data import ImageNetData
from resablate.data.imagenet import MEAN, STD
from resablate.models.scoring import class_scores
from resablate.records import RunFolder
from tests.conftest import run_app

SIZES = {"a": [(256, 300), (320, 256)], "b": [(256, 256), (300, 270)]}  # (height, width) of each val image


@pytest.fixture
def tree(tmp_path):
    """Two classes; val images of random colours, the first three with a shorter side of 256 (no resize before the
    crops), the last larger."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls, sizes in SIZES.items():
            (tmp_path / split / cls).mkdir(parents=True)
            for i, (h, w) in enumerate(sizes):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    return tmp_path


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def ten_crop_mean_colours(path) -> list[np.ndarray]:
    """By hand: the image (shorter side already 256), its four corner 224 crops and the centre one, each twice (the
    flip has the same mean colour); each crop's mean colour after the per-channel normalization."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    h, w = pixels.shape[:2]
    assert min(h, w) == 256
    top, left = int(round((h - 224) / 2)), int(round((w - 224) / 2))
    corners = [(0, 0), (0, w - 224), (h - 224, 0), (h - 224, w - 224), (top, left)]
    means = [(pixels[y:y + 224, x:x + 224].mean((0, 1)) - MEAN) / STD for y, x in corners]
    return means * 2


def test_ten_crop_scores_are_the_average_over_the_ten_crops(tree):
    """The network returns each crop's mean colour as its three class scores; the test's score of an image is the
    average of the ten crops' softmax."""
    dm = ImageNetData(root=str(tree), batch_size=2, num_workers=0, test_crops=10)
    dm.setup("test")
    assert dm.test_protocol == "10-crop"
    got, labels = [], []
    for x, y in dm.test_dataloader():
        assert x.shape[1:] == (10, 3, 224, 224)
        got.append(class_scores(lambda v: v.double().mean((2, 3)), x))
        labels += y.tolist()
    got = torch.cat(got)
    files = [tree / "val" / cls / f"{i}.png" for cls in SIZES for i in range(2)]
    for row, path in zip(got, files, strict=True):
        if min(Image.open(path).size) != 256:
            continue  # resized first: not a hand computation
        expected = np.mean([softmax(m) for m in ten_crop_mean_colours(path)], axis=0)
        np.testing.assert_allclose(row.numpy(), expected, rtol=0, atol=1e-6)
    assert labels == [0, 0, 1, 1]
    # The validation during training stays the centre crop.
    assert next(iter(dm.val_dataloader()))[0].shape == (2, 3, 224, 224)


def test_multi_scale_scores_are_the_average_over_the_scales(tree):
    """The network's scores are the image's height and width at that scale (and 0): whole images, resized so that
    the shorter side is each scale, one image a batch, scores averaged over the scales."""
    scales = [224, 256, 384, 480, 640]
    dm = ImageNetData(root=str(tree), batch_size=2, num_workers=0, test_scales=scales)
    dm.setup("test")
    assert dm.test_protocol == "multi-scale 224,256,384,480,640"
    files = [tree / "val" / cls / f"{i}.png" for cls in SIZES for i in range(2)]
    batches = list(dm.test_dataloader())
    assert len(batches) == len(files)

    def size_net(v: torch.Tensor) -> torch.Tensor:
        h, w = v.shape[-2:]
        return torch.tensor([[h / 100, w / 100, 0.0]], dtype=torch.float64).expand(v.shape[0], 3)

    for (x, _), path in zip(batches, files, strict=True):
        w, h = Image.open(path).size
        expected = []
        for s in scales:  # shorter side s, the longer in proportion (rounded down, as torchvision resizes)
            sh, sw = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
            expected.append(softmax(np.array([sh / 100, sw / 100, 0.0])))
        assert [tuple(t.shape[-2:]) for t in x][1] == ((256, int(256 * w / h)) if h <= w else (int(256 * h / w), 256))
        got = class_scores(size_net, x)[0].numpy()
        np.testing.assert_allclose(got, np.mean(expected, axis=0), rtol=0, atol=1e-6)  # float32 scores


@pytest.mark.slow
@pytest.mark.parametrize("protocol,name", [("data.test_crops=10", "10-crop"),
                                           ("data.test_scales=[224,288]", "multi-scale 224,288")])
def test_a_real_network_is_tested_by_each_protocol(tree, tmp_path, protocol, name):
    run = tmp_path / "run"
    run_app(["data=imagenet", f"data.root={tree}", "data.num_workers=0", "depth=18", "model.width_multiplier=0.125",
             "recipe=quick", "recipe.batch_size=4", "trainer.max_steps=2", "logger=csv", protocol,
             f"hydra.run.dir={run}"], cwd=tmp_path)
    summary = RunFolder(run).summary()
    assert (summary["status"], summary["test_protocol"]) == ("completed", name)
    wrong = summary["test_error"] * 4 / 100  # of the 4 val images
    assert 0 <= wrong <= 4 and wrong == round(wrong)


@pytest.mark.parametrize("kwargs,message", [
    ({"test_crops": 5}, "test_crops=5 is not valid; valid: 1 (centre crop), 10 (R1's 10-crop testing)"),
    ({"test_scales": [128]}, "test_scales=[128] is not valid; valid: null, or a list of shorter sides >= 224"),
    ({"test_crops": 10, "test_scales": [224]}, "choose one protocol"),
])
def test_a_bad_protocol_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        ImageNetData(root="x", num_workers=0, **kwargs)
