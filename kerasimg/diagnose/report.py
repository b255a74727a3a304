"""``report.html``: one self-contained page per run, or several runs side by side.

Everything a run left for people to read, on one page that opens from a
``file://`` URL with no network: the configuration, the metrics, curves, the
confusion matrix, the per-class table, the reliability diagram, the highest-loss
images, the skipped files and the zoo versions exported from the run. Figures are
embedded as ``data:`` URIs, so the page can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from kerasimg.files import write_text
from kerasimg.tables import Column, format_cell
from kerasimg.training.run import Run

CONFIG_ROWS = (
    ("backbone", "arguments", "backbone"),
    ("data", "arguments", "data"),
    ("weights", "arguments", "weights"),
    ("schedule", "resolved", "schedule"),
    ("epochs", "resolved", "epochs"),
    ("image size", "resolved", "image_size"),
    ("batch size", "arguments", "batch_size"),
    ("precision", "resolved", "precision"),
    ("seed", "arguments", "seed"),
)
METRIC_ROWS = (
    ("test accuracy", "test_accuracy", ".2%"),
    ("top-k accuracy", "test_top_k_accuracy", ".2%"),
    ("balanced accuracy", "test_balanced_accuracy", ".2%"),
    ("macro-F1", "test_macro_f1", ".3f"),
    ("ECE (15 bins)", "test_ece", ".3f"),
    ("test loss", "test_loss", ".3f"),
    ("test images", "test_examples", "d"),
    ("best epoch", "best_epoch", "d"),
    ("train seconds", "train_seconds", ".0f"),
)
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.runs{display:grid;grid-template-columns:repeat(auto-fit,minmax(30em,1fr));gap:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f2f2f2}td.n{text-align:right}img{max-width:100%;height:auto;display:block;margin:.5em 0}
.missing{color:#a00}
"""


def _escape(value) -> str:
    return html.escape("" if value is None else str(value))


def table(rows: list[dict], columns: list[Column]) -> str:
    """``rows`` as HTML with ``(key, header, format)`` columns, as ``kerasimg.tables`` writes Markdown."""
    head = "".join(f"<th>{_escape(header)}</th>" for _, header, _ in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=n' if spec else ''}>{_escape(format_cell(row.get(key), spec))}</td>"
            for key, _, spec in columns
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(path: Path, alt: str) -> str:
    """``<img>`` with the PNG embedded, or a line saying it is missing."""
    if not path.is_file():
        return f'<p class="missing">{_escape(path.name)} is missing.</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_escape(alt)}" src="data:image/png;base64,{data}">'


def _pairs(rows: list[tuple[str, object]]) -> str:
    return table([{"k": k, "v": v} for k, v in rows], [("k", "", ""), ("v", "", "")]).replace(
        "<thead><tr><th></th><th></th></tr></thead>", ""
    )


def run_section(run_dir: str | os.PathLike, zoo: str | os.PathLike | None = None) -> str:
    """One run's part of a page; the exports of the run that ``zoo`` (if given) holds are listed."""
    run = Run(run_dir)
    config = run.read_config()
    metrics = run.read_metrics() if run.finished else {}
    # The run's name only: the page is moved and shared, and this machine's absolute path means nothing there.
    parts = [f"<section><h2>{_escape(run.path.name)}</h2>"]
    parts.append("<h3>Configuration</h3>")
    parts.append(_pairs([(label, config.get(part, {}).get(key)) for label, part, key in CONFIG_ROWS]))
    if not metrics:
        parts.append('<p class="missing">Not evaluated yet (the run was stopped before its evaluation).</p>')
    else:
        k = metrics.get("top_k", "k")
        parts.append("<h3>Test metrics</h3>")
        parts.append(
            _pairs(
                [
                    (label.replace("top-k", f"top-{k}"), format_cell(metrics.get(key), spec))
                    for label, key, spec in METRIC_ROWS
                    if key in metrics
                ]
            )
        )
        per_class = [{"class": name, **values} for name, values in metrics.get("per_class", {}).items()]
        parts.append("<h3>Per class</h3>")
        parts.append(
            table(
                per_class,
                [
                    ("class", "class", ""),
                    ("precision", "precision", ".3f"),
                    ("recall", "recall", ".3f"),
                    ("f1", "F1", ".3f"),
                    ("support", "support", "d"),
                ],
            )
        )
    for title, path in (
        ("Curves", run.curves_path),
        ("Confusion matrix", run.confusion_path),
        ("Reliability", run.reliability_path),
        (
            "Highest-loss test images"
            + (" (Grad-CAM for the predicted class)" if metrics.get("mistakes_grad_cam", True) else ""),
            run.mistakes_path(),
        ),
    ):
        parts.append(f"<h3>{_escape(title)}</h3>{image(path, title)}")
    skipped = run.skipped_path.read_text(encoding="utf-8").splitlines() if run.skipped_path.exists() else []
    parts.append(f"<h3>Skipped files ({len(skipped)})</h3>")
    if skipped:
        rows = [dict(zip(("file", "reason"), line.split("\t", 1))) for line in skipped]
        parts.append(table(rows, [("file", "file", ""), ("reason", "reason", "")]))
    exports = _exports(run, zoo)
    if zoo is not None:  # a run's own page, written as it finishes, has nothing exported yet
        parts.append(f"<h3>Zoo exports ({len(exports)}, in {_escape(zoo)})</h3>")
    if exports:
        parts.append(
            table(
                exports,
                [
                    ("name", "name", ""),
                    ("version", "version", "d"),
                    ("path", "path", ""),
                    ("exported", "exported", ""),
                ],
            )
        )
    parts.append("</section>")
    return "\n".join(parts)


def _exports(run: Run, zoo: str | os.PathLike | None) -> list[dict]:
    if zoo is None:
        return []
    from kerasimg.serving.zoo import Zoo  # only here: training/ (which writes reports) imports no serving/

    here = str(run.path.resolve())
    return [e for e in Zoo(zoo).entries() if e.get("run") == here]


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{_escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def write_run_report(run_dir: str | os.PathLike, zoo: str | os.PathLike | None = None) -> Path:
    """(Re)write ``report.html`` in the run directory, listing the exports ``zoo`` holds (if given)."""
    run = Run(run_dir)
    return write_text(run.report_path, page(f"kerasimg run {run.path.name}", run_section(run.path, zoo)))


SUMMARY_COLUMNS: list[Column] = [
    ("run", "run", ""),
    ("backbone", "backbone", ""),
    ("test_accuracy", "test accuracy", ".4f"),
    ("test_balanced_accuracy", "balanced accuracy", ".4f"),
    ("test_macro_f1", "macro-F1", ".4f"),
    ("test_ece", "ECE", ".4f"),
]


def write_report(
    run_dirs: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    title: str = "kerasimg runs",
    intro: str = "",
    zoo: str | os.PathLike | None = None,
) -> Path:
    """Several runs on one page: a summary table, then the runs side by side. ``intro`` is HTML put first."""
    rows = []
    for run_dir in run_dirs:
        run = Run(run_dir)
        metrics = run.read_metrics() if run.finished else {}
        rows.append(
            {"run": run.path.name, "backbone": run.read_config()["arguments"].get("backbone"), **metrics}
        )
    sections = "\n".join(run_section(d, zoo) for d in run_dirs)
    body = f'{intro}<h2>Summary</h2>{table(rows, SUMMARY_COLUMNS)}<div class="runs">{sections}</div>'
    return write_text(out, page(title, body))
