"""Figures 1, 4, 6, 7 and the Pareto plot: files written (PNG and PDF, non-empty), the paper's axes and legend (error %
against iterations, dashed training and bold test error), curves that are the mean over seeds, and notes that name
what could not be drawn. Fig. 7 is measured on real checkpoints of a tiny sweep."""

from __future__ import annotations

import statistics
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from analysis import curves, pareto
from analysis import fig7 as fig7_module
from analysis import runs as run_records
from analysis.output import save_figure
from resablate.models import build_network

SWEEP = "multirun/shortcut=none,zero_pad_depth=20,56,110_seed=0,1,2"


@contextmanager
def keeping_figures():
    """The matplotlib figures the artifacts save, kept for inspection: {artifact name: Figure}."""
    figures = {}

    def keep(fig, artifact, out):
        figures[artifact.name] = fig
        return save_figure(fig, artifact, out)

    with pytest.MonkeyPatch.context() as patch:
        for module in (curves, fig7_module, pareto):
            patch.setattr(module, "save_figure", keep)
        yield figures


@pytest.fixture
def drawn():
    with keeping_figures() as figures:
        yield figures


@pytest.fixture(scope="module")
def zoo_figures(zoo, tmp_path_factory):
    """fig1, fig4, fig6 and pareto drawn once from the zoo: (output folder, {name: Artifact}, {name: Figure})."""
    out = tmp_path_factory.mktemp("figures")
    runs = run_records.load([str(zoo)])
    with keeping_figures() as figures:
        artifacts = {f.__name__: f(runs, out) for f in (curves.fig1, curves.fig4, curves.fig6, pareto.pareto)}
    return out, artifacts, figures


def assert_image_files(artifact, out: Path) -> None:
    png, pdf = out / f"{artifact.name}.png", out / f"{artifact.name}.pdf"
    assert {png, pdf} <= set(artifact.files)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def legend(ax) -> dict:
    return {h.get_label(): h for h in ax.get_legend().legend_handles}


def test_fig6_panels_axes_and_legend(zoo_figures):
    out, artifacts, drawn = zoo_figures
    assert_image_files(artifacts["fig6"], out)
    plain, resnet = drawn["fig6"].axes  # the ResNet-110 vs ResNet-1202 panel has no runs: left out
    assert [ax.get_title() for ax in (plain, resnet)] == ["plain", "ResNet (option A)"]
    assert "Panel 'ResNet-110 vs ResNet-1202' left out: no ResNet-110/1202 runs." in artifacts["fig6"].notes
    for ax in (plain, resnet):
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_ylim()) == ("iter. (1e4)", "error (%)", (0.0, 20.0))
    keys = legend(resnet)
    assert list(keys) == ["ResNet-20 (n=3)", "ResNet-56", "train", "test"]
    assert keys["train"].get_linestyle() == "--" and keys["test"].get_linestyle() == "-"
    assert keys["test"].get_linewidth() > keys["train"].get_linewidth()
    styles = sorted(line.get_linestyle() for line in resnet.get_lines())
    assert styles == ["-", "-", "--", "--"]  # ResNet-20 and -56: one test and one training curve each


def test_fig6_curve_is_the_mean_over_seeds(zoo, zoo_figures):
    _, _, drawn = zoo_figures
    last = [pd.read_csv(zoo / SWEEP / str(i) / "metrics.csv")["test/err"].dropna().iloc[-1] for i in (3, 4, 5)]
    resnet = drawn["fig6"].axes[1]
    bold = [line for line in resnet.get_lines() if line.get_linestyle() == "-"]
    finals = sorted(line.get_ydata()[-1] for line in bold)
    assert finals[1] == pytest.approx(statistics.mean(last))  # ResNet-20's curve; ResNet-56 ends lower
    assert bold[0].get_xdata()[-1] == pytest.approx(6.4)  # 64,000 iterations in units of 1e4


def test_fig6_notes_name_what_is_not_drawn(zoo_figures):
    art = zoo_figures[1]["fig6"]
    no_metrics = f"{SWEEP}/7 has no metrics.csv; not drawn."
    assert any(n.startswith("ResNet-56: ") and n.endswith(no_metrics) for n in art.notes)
    not_drawn = next(n for n in art.notes if n.startswith("Not completed, not drawn:"))
    assert "failed (RuntimeError" in not_drawn and "diverged at step 900" in not_drawn and "missing" in not_drawn
    other = "Not drawn here: completed runs on fashion_mnist (1 run) (choose the data set with --dataset NAME)."
    assert other in art.notes
    assert len(art.runs) == len(set(art.runs)) == 7


def test_fig1_training_and_test_panels(zoo_figures):
    out, artifacts, drawn = zoo_figures
    art = artifacts["fig1"]
    assert_image_files(art, out)
    train, test = drawn["fig1"].axes
    assert (train.get_title(), test.get_title()) == ("training error", "test error")
    assert {line.get_linestyle() for line in train.get_lines()} == {"--"}
    assert {line.get_linestyle() for line in test.get_lines()} == {"-"}
    assert list(legend(test)) == ["plain-20", "plain-56"]
    assert len(art.runs) == 2  # plain-20 and the completed plain-56, each named once although both panels draw them


def test_fig4_on_another_data_set_says_so(zoo_figures):
    out, artifacts, drawn = zoo_figures
    art = artifacts["fig4"]
    assert_image_files(art, out)
    assert "Drawn on fashion_mnist, not on the paper's data set (imagenet)." in art.notes
    plain, resnet = drawn["fig4"].axes
    assert plain.get_xlabel() == "iterations"  # 1,000-step runs: no 1e4 scale
    assert list(legend(plain)) == ["plain-18", "train", "test"]


def test_figure_with_no_runs_is_still_written_and_says_why(tmp_path, drawn):
    (tmp_path / "empty").mkdir()
    art = curves.fig6(run_records.load([str(tmp_path / "empty")]), tmp_path / "out")
    assert_image_files(art, tmp_path / "out")
    assert [ax.texts[0].get_text() for ax in drawn["fig6"].axes] == ["no plain runs", "no ResNet runs",
                                                                     "no ResNet-110/1202 runs"]
    assert ("Nothing drawn: no completed cifar-family runs with metrics of this figure's networks (no plain runs; "
            "no ResNet runs; no ResNet-110/1202 runs).") in art.notes


def test_pareto_front_of_the_zoo(zoo, zoo_figures):
    out, artifacts, drawn = zoo_figures
    runs = run_records.load([str(zoo)])
    art = artifacts["pareto"]
    assert_image_files(art, out)
    done = runs.completed[runs.completed.dataset == "cifar10"]
    # computed here: a run is on the front when no other run is as cheap and as accurate, one of them strictly
    front = {r.run_dir for _, r in done.iterrows()
             if not any(o.macs <= r.macs and o.test_error <= r.test_error and (o.macs, o.test_error) != (r.macs,
                        r.test_error) for _, o in done.iterrows())}
    assert {Path(p).name for p in front} == {"5", "7"}  # ResNet-20 at 8.3 %, ResNet-56 at 6.9 %
    table = art.table
    assert list(table[table["front (MACs)"] == "yes"]["test error (%)"]) == ["8.30", "6.90"]
    assert (out / "pareto.csv").exists() and (out / "pareto.md").exists()
    assert [ax.get_xlabel() for ax in drawn["pareto"].axes] == ["multiply-adds (M)", "parameters (M)"]
    assert drawn["pareto"].axes[0].get_ylabel() == "test error (%)"


def test_layer_response_std_matches_a_hand_computation():
    torch.manual_seed(0)
    net = build_network(8, shortcut="zero_pad", family="cifar", num_classes=10)
    for m in net.modules():  # BN statistics that are not the identity, so that eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(6, 3, 32, 32)
    stds = fig7_module.layer_response_std(net, [x[:4], (x[4:], torch.zeros(2))])
    assert len(stds) == 7  # stem + 3 blocks x 2 convolutions of ResNet-8
    net.eval()
    with torch.no_grad():
        stem = net.stem[1](net.stem[0](x))
        block = net.stages[0][0]
        first = block.bn1(block.conv1(torch.relu(stem)))
    assert stds[0] == pytest.approx(stem.double().std(unbiased=False).item(), rel=1e-5)
    assert stds[1] == pytest.approx(first.double().std(unbiased=False).item(), rel=1e-5)
    projected = build_network(8, shortcut="projection", family="cifar", num_classes=10)
    assert len(fig7_module.layer_response_std(projected, [x])) == 7  # the 1x1 projections' BNs are not responses


@pytest.mark.slow
def test_fig7_from_real_checkpoints(trained, tmp_path, drawn):
    art = fig7_module.fig7(run_records.load([str(trained)]), tmp_path, max_images=64)
    assert_image_files(art, tmp_path)
    assert len(art.runs) == 2
    measured = pd.read_csv(tmp_path / "fig7.csv")
    assert sorted(measured.label.unique()) == ["ResNet-8", "plain-8"]
    assert measured.groupby("label").layer.max().to_dict() == {"ResNet-8": 7, "plain-8": 7}
    assert (measured["std"] > 0).all()
    top, bottom = drawn["fig7"].axes
    assert (top.get_xlabel(), bottom.get_xlabel()) == ("layer index (original)", "layer index (sorted by magnitude)")
    assert top.get_ylabel() == "std" and list(legend(top)) == ["plain-8", "ResNet-8"]
    for line in bottom.get_lines():
        values = list(line.get_ydata())
        assert values == sorted(values, reverse=True)
    assert "Drawn on synthetic, not on the paper's data set (cifar10)." in art.notes


def test_fig7_names_runs_without_checkpoints(zoo, tmp_path):
    art = fig7_module.fig7(run_records.load([str(zoo)]), tmp_path, max_images=8)
    assert art.runs == []
    unmeasured = [n for n in art.notes if "not measured (FileNotFoundError: no checkpoints/last.ckpt)" in n]
    assert len(unmeasured) == 7  # every completed cifar10 run of the zoo
    assert_image_files(art, tmp_path)


def test_fig6_shows_the_spread_over_seeds_and_where_the_test_error_was_measured(zoo, zoo_figures):
    """ResNet-20 has 3 seeds: a band of ± one sample std around its mean test curve; each bold curve has a marker at
    each step where metrics.csv has a test error (no marker on the dashed training curves)."""
    _, artifacts, drawn = zoo_figures
    resnet = drawn["fig6"].axes[1]
    runs = [pd.read_csv(zoo / SWEEP / str(i) / "metrics.csv") for i in (3, 4, 5)]
    finals = [r["test/err"].dropna().iloc[-1] for r in runs]
    bands = [c for c in resnet.collections if len(c.get_paths())]
    upper = max(path.vertices[:, 1].max() for c in bands for path in c.get_paths())
    lower = min(path.vertices[:, 1].min() for c in bands for path in c.get_paths())
    assert bands and lower <= statistics.mean(finals) - statistics.stdev(finals) + 1e-9
    last_band = [c for c in bands if c.get_paths()[0].vertices[:, 0].max() == pytest.approx(6.4)]
    top = max(v[1] for c in last_band for p in c.get_paths() for v in p.vertices if v[0] == pytest.approx(6.4))
    assert top == pytest.approx(statistics.mean(finals) + statistics.stdev(finals))
    assert upper >= top
    measured = sorted(runs[0]["step"][runs[0]["test/err"].notna()] / 1e4)
    bold = [line for line in resnet.get_lines() if line.get_linestyle() == "-"]
    assert all(line.get_marker() == "o" for line in bold)
    assert any(list(line.get_xdata()) == pytest.approx(measured) for line in bold)
    assert all(line.get_marker() in ("None", None, "") for line in resnet.get_lines() if line.get_linestyle() == "--")
    assert "bands: ± 1 std over seeds" in drawn["fig6"]._suptitle.get_text()
    assert "CIFAR-10" in drawn["fig6"]._suptitle.get_text()  # the data set by its name, not cifar10
