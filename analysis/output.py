"""What every artifact hands back and how it is written: tables as .md/.tex/.csv, figures as .png/.pdf."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


@dataclass
class Artifact:
    """One table or figure: its files, the run folders it came from, and what it could not show (notes)."""

    name: str
    title: str
    kind: str  # "table" | "figure"
    files: list[Path] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None  # the displayed table (strings), for tables

    @property
    def markdown(self) -> str:
        parts = [f"## {self.title}", ""]
        if self.table is not None:
            parts += [markdown_table(self.table), ""]
        parts += [f"- {n}" for n in self.notes]
        return "\n".join(parts).rstrip() + "\n"

    def print(self) -> None:
        print(self.markdown)
        for f in self.files:
            print(f"wrote {f}")


def write_table(artifact: Artifact, numbers: pd.DataFrame, out: Path) -> Artifact:
    """`<name>.csv` holds the numbers (all columns, unrounded); `.md` and `.tex` the displayed table and the notes."""
    out.mkdir(parents=True, exist_ok=True)
    csv, md, tex = (out / f"{artifact.name}.{ext}" for ext in ("csv", "md", "tex"))
    numbers.to_csv(csv, index=False)
    md.write_text(artifact.markdown)
    latex = artifact.table.to_latex(index=False, escape=True, caption=latex_escape(artifact.title),
                                    label=f"tab:{artifact.name}")
    if artifact.notes:
        latex += "\n".join(f"% {n}" for n in artifact.notes) + "\n"
    tex.write_text(latex)
    artifact.files += [md, tex, csv]
    return artifact


def write_csv(frame: pd.DataFrame, artifact: Artifact, out: Path, name: str) -> Artifact:
    """`out/<name>` from `frame`, listed among the artifact's files."""
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / name, index=False)
    artifact.files.append(out / name)
    return artifact


def write_texts(artifact: Artifact, out: Path, texts: dict[str, str]) -> Artifact:
    """`out/<name>` for each name and text, listed among the artifact's files."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out / name).write_text(text)
        artifact.files.append(out / name)
    return artifact


def save_figure(fig: plt.Figure, artifact: Artifact, out: Path) -> Artifact:
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        file = out / f"{artifact.name}.{ext}"
        fig.savefig(file, dpi=150, bbox_inches="tight")
        artifact.files.append(file)
    plt.close(fig)
    return artifact


def empty_panel(ax: plt.Axes, text: str) -> None:
    """A panel with nothing to draw says so instead of staying blank."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.35", wrap=True)


def markdown_table(table: pd.DataFrame) -> str:
    """Cells as written (no re-parsing of "+0.80" into 0.8), numbers right-aligned."""
    align = ["left" if table[c].map(lambda v: not _numeric(v)).any() else "right" for c in table.columns]
    return table.to_markdown(index=False, disable_numparse=True, colalign=align)


NUMBER = re.compile(r"^[+-]?[\d,]*\.?\d+M?$|^—$|^$")


def _numeric(value) -> bool:
    return bool(NUMBER.match(str(value).strip()))


def latex_escape(text: str) -> str:
    for char in "&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


def fmt(value, digits: int = 2) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.{digits}f}"
