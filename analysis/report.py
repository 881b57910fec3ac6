"""One page (report.html and report.md) with every table and figure the runs allow, each naming the run folders it
came from; what could not be made says why. Images are linked relative to the page, so the folder can be moved whole.
"""

from __future__ import annotations

import html
from pathlib import Path

from .curves import fig1, fig4, fig6
from .fig7 import fig7
from .output import Artifact, markdown_table, write_texts
from .pareto import pareto
from .runs import Runs, describe, display_path, status_counts
from .tables import table1, table2, table3, table6

ITEMS = {"table1": table1, "table2": table2, "table3": table3, "table6": table6, "fig1": fig1, "fig4": fig4,
         "fig6": fig6, "fig7": fig7, "pareto": pareto}
ORDER = ("table6", "fig1", "fig6", "fig7", "table2", "table3", "fig4", "table1", "pareto")

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:nth-child(-n+3){text-align:left}img{max-width:100%}li{font-size:13px}
.notes li{color:#444}details{margin:.3em 0 1.5em}summary{cursor:pointer;color:#555}code{font-size:12px}"""


def make_all(runs: Runs, out: Path, **options) -> list[Artifact]:
    items = []
    for name in ORDER:
        try:
            items.append(ITEMS[name](runs, out, **options))
        except Exception as err:  # one broken artifact must not hide the others; the page says what went wrong
            items.append(Artifact(name, name, "error", notes=[f"could not be made: {type(err).__name__}: {err}"]))
    return items


def report(runs: Runs, out: Path, **options) -> Artifact:
    items = make_all(runs, out, **options)
    art = Artifact("report", "Report", "report", runs=list(runs.frame.run_dir))
    write_texts(art, out, {"report.html": _html(runs, items, out), "report.md": _markdown(runs, items, out)})
    art.notes = [f"{i.name}: {', '.join(f.name for f in i.files) or 'no files'}" for i in items]
    return art


def _not_completed(runs: Runs) -> list[str]:
    return [describe(r) for _, r in runs.frame[runs.frame.status != "completed"].iterrows()]


def _images(item: Artifact, out: Path) -> list[str]:
    return [f.relative_to(out).as_posix() for f in item.files if f.suffix == ".png"]


def _html(runs: Runs, items: list[Artifact], out: Path) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>resablate report</title><style>{STYLE}</style>"
             "</head><body>", "<h1>resablate: R1 reproduction report</h1>",
             f"<p>Runs from {e(runs.source)}: {len(runs.frame)} run folders ({e(status_counts(runs.frame))}).</p>"]
    parts += [f"<p>{e(n)}</p>" for n in runs.notes]
    failed = _not_completed(runs)
    if failed:
        parts.append(f"<details open><summary>{len(failed)} runs did not complete</summary><ul>"
                     + "".join(f"<li><code>{e(f)}</code></li>" for f in failed) + "</ul></details>")
    parts.append("<ul>" + "".join(f"<li><a href='#{i.name}'>{e(i.title)}</a></li>" for i in items) + "</ul>")
    for item in items:
        parts.append(f"<h2 id='{item.name}'>{e(item.title)}</h2>")
        parts += [f"<img src='{e(src)}' alt='{e(item.name)}'>" for src in _images(item, out)]
        if item.table is not None:
            parts.append(item.table.to_html(index=False, border=0, na_rep="—"))
        if item.notes:
            parts.append("<ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in item.notes) + "</ul>")
        files = [f.relative_to(out).as_posix() for f in item.files if f.suffix != ".png"]
        if files:
            parts.append("<p>Files: " + ", ".join(f"<a href='{e(f)}'>{e(f)}</a>" for f in files) + "</p>")
        parts.append(_runs_html(item))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _runs_html(item: Artifact) -> str:
    if item.kind == "error" or item.name == "table1":
        return "" if item.kind == "error" else "<p><em>From the builder; no runs.</em></p>"
    if not item.runs:
        return "<p><em>Made from no run folders.</em></p>"
    runs = "".join(f"<li><code>{html.escape(display_path(r))}</code></li>" for r in item.runs)
    return f"<details><summary>{len(item.runs)} run folders</summary><ul>{runs}</ul></details>"


def _markdown(runs: Runs, items: list[Artifact], out: Path) -> str:
    parts = ["# resablate: R1 reproduction report", "",
             f"Runs from {runs.source}: {len(runs.frame)} run folders ({status_counts(runs.frame)}).", ""]
    parts += [f"{n}\n" for n in runs.notes]
    failed = _not_completed(runs)
    if failed:
        parts += [f"{len(failed)} runs did not complete:", "", *[f"- `{f}`" for f in failed], ""]
    for item in items:
        parts += [f"## {item.title}", ""]
        parts += [f"![{item.name}]({src})\n" for src in _images(item, out)]
        if item.table is not None:
            parts += [markdown_table(item.table), ""]
        parts += [f"- {n}" for n in item.notes] + [""]
        if item.runs:
            parts += [f"<details><summary>{len(item.runs)} run folders</summary>", "",
                      *[f"- `{display_path(r)}`" for r in item.runs], "", "</details>", ""]
        elif item.kind != "error":
            parts += ["*From the builder; no runs.*" if item.name == "table1" else "*Made from no run folders.*", ""]
    return "\n".join(parts)
