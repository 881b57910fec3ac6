"""`python -m analysis ensemble --runs ...` (R1 Table 5's ensembles): the members' softmax scores averaged on their
common test set. The averaging against a hand computation; three real Fashion-MNIST runs end to end; members of
different test sets refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.__main__ import main
from analysis.ensemble import ensemble_errors
from resablate.records import RunFolder
from tests.conftest import needs_fashion_mnist, run_app


def test_the_ensemble_averages_the_members_softmax_scores():
    """Three members, four images, three classes. Member errors: 25%, 50%, 50%; the mean of their scores gets
    images 0-3 right (by hand: image 1's mean is (0.4, 0.4333, 0.1667): class 1)."""
    labels = np.array([0, 1, 2, 0])
    a = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    b = np.array([[0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.3, 0.6, 0.1]])
    c = np.array([[0.6, 0.3, 0.1], [0.6, 0.1, 0.3], [0.5, 0.2, 0.3], [0.8, 0.1, 0.1]])
    each, together = ensemble_errors([a, b, c], labels, top5=False)
    assert [e["top1"] for e in each] == [25.0, 50.0, 50.0]
    assert together == {"top1": 0.0}
    mean = (a + b + c) / 3
    assert mean[1].argmax() == 1 and mean[2].argmax() == 2 and mean[0].argmax() == 0


def test_top5_is_counted_where_there_are_100_classes():
    rng = np.random.default_rng(0)
    scores = rng.random((2, 3, 100))
    labels = np.array([int(np.argsort(-scores.mean(0)[0])[4]), int(np.argsort(-scores.mean(0)[1])[5]), 7])
    _, together = ensemble_errors(list(scores), labels, top5=True)
    in_top5 = [labels[i] in np.argsort(-scores.mean(0)[i])[:5] for i in range(3)]
    assert in_top5[:2] == [True, False]
    assert together["top5"] == pytest.approx(100 * (1 - np.mean(in_top5)))
    assert together["top1"] == pytest.approx(100 * np.mean([scores.mean(0)[i].argmax() != labels[i] for i in range(3)]))


@pytest.mark.slow
@needs_fashion_mnist
def test_three_fashion_mnist_runs_and_their_ensemble(tmp_path, capsys):
    sweep = tmp_path / "runs"
    run_app(["-m", "data=fashion_mnist", "data.train_size=1024", "depth=8", "recipe=quick", "trainer.max_steps=20",
             "recipe.eval_every=20", "logger=csv", "seed=1,2,3", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    members = [str(sweep / str(k)) for k in range(3)]
    assert main(["ensemble", "--runs", *members, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "(fashion_mnist, 10000 test images)" in out
    rows = {"/".join(line.split("|")[5].strip().split("/")[-2:]): [c.strip() for c in line.split("|")[1:-1]]
            for line in out.splitlines() if line.startswith("| ResNet-8")}  # keyed by the run's last two folders
    assert sorted(rows) == ["runs/0", "runs/1", "runs/2"]
    for k, member in enumerate(members):  # scored as its own test scored it: the error its summary recorded
        (_, seed, top1, own, _) = rows[f"runs/{k}"]
        assert (seed, top1) == (str(k + 1), f"{RunFolder(member).summary()['test_error']:.2f}") and own == top1
    (line,) = [ln for ln in out.splitlines() if ln.startswith("| ensemble of 3")]
    ensemble_top1 = float(line.split("|")[3])
    best = min(float(r[2]) for r in rows.values())
    assert f"Ensemble top-1 {ensemble_top1:.2f}% against the best member's {best:.2f}%" in out

    other = tmp_path / "synthetic"
    run_app(["data=synthetic", "data.num_samples=64", "recipe.batch_size=16", "depth=8", "recipe=quick",
             "trainer.max_steps=2", "logger=csv",
             f"hydra.run.dir={other}"], cwd=tmp_path)
    assert main(["ensemble", "--runs", members[0], str(other), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("analysis: error: ") and "is tested on synthetic" in err
    assert "an ensemble needs one test set" in err


def test_an_ensemble_without_members_is_refused(capsys):
    assert main(["ensemble"]) == 2
    assert capsys.readouterr().err.strip() == "analysis: error: ensemble needs its members: --runs RUN_DIR RUN_DIR ..."
