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
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);margin:0;background:#fff}
main{max-width:1280px;margin:0 auto;padding:1.5rem clamp(.75rem,3vw,2rem) 3rem}
h1,h2,h3,p,figcaption{overflow-wrap:anywhere}
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.25rem;margin:1.5rem 0 .5rem}
h3{font-size:1.05rem;margin:0 0 .5rem}.subtitle,.summary{color:var(--muted);margin:.25rem 0 1rem}
.headline{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.75rem;margin:1rem 0}
.stat{border:1px solid var(--line);border-radius:8px;padding:.6rem .8rem;background:var(--soft)}
.stat .value{display:block;font-size:1.5rem;font-weight:600}.stat .label{color:var(--muted);font-size:.9rem}
.columns{display:flex;flex-wrap:wrap;gap:1.25rem}
.columns>.card{flex:1 1 18rem}.columns>.card.table{flex:1.6 1 24rem}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,30rem),1fr));gap:1.25rem}
.wide{grid-column:1/-1}
.runs{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,36rem),1fr));gap:2rem}
.card{border:1px solid var(--line);border-radius:8px;padding:1rem;min-width:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.95rem}
td,th{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:left;overflow-wrap:break-word}
th,td.n{white-space:nowrap}
th{background:var(--soft)}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:0}img{max-width:100%;height:auto;display:block;margin:.25rem auto}
figcaption{font-size:.95rem;color:var(--muted);margin-top:.5rem}
.missing{color:#a40e26}
@media (max-width:480px){
table{font-size:.85rem}td,th{padding:.25rem .3rem}.card{padding:.7rem}.stat .value{font-size:1.25rem}}
"""
HEADLINE = (
    ("test accuracy", "test_accuracy", ".2%"),
    ("balanced accuracy", "test_balanced_accuracy", ".2%"),
    ("macro-F1", "test_macro_f1", ".3f"),
    ("ECE", "test_ece", ".3f"),
)
# A multi-label run (metrics "task": "multilabel") is read by its threshold-free mAP first.
MULTILABEL_METRIC_ROWS = (
    ("test mAP", "test_map", ".3f"),
    ("micro-F1", "test_micro_f1", ".3f"),
    ("macro-F1", "test_macro_f1", ".3f"),
    ("exact-match accuracy", "test_accuracy", ".2%"),
    ("test loss (binary cross-entropy)", "test_loss", ".3f"),
    ("test images", "test_examples", "d"),
    ("best epoch", "best_epoch", "d"),
    ("train seconds", "train_seconds", ".0f"),
)
MULTILABEL_HEADLINE = (
    ("test mAP", "test_map", ".3f"),
    ("micro-F1", "test_micro_f1", ".3f"),
    ("macro-F1", "test_macro_f1", ".3f"),
    ("exact match", "test_accuracy", ".1%"),
)
MULTILABEL_PER_CLASS = [
    ("class", "class", ""),
    ("ap", "AP", ".3f"),
    ("threshold", "threshold", ".3f"),
    ("precision", "precision", ".3f"),
    ("recall", "recall", ".3f"),
    ("f1", "F1", ".3f"),
    ("support", "support", "d"),
]
FIGURE_CAPTIONS = {
    "Curves": "Loss and accuracy per epoch, train and validation; dashed lines mark phase changes.",
    "Confusion matrix": "Rows are the true class, columns the prediction; colour is the row's fraction.",
    "Reliability": "Accuracy against confidence per bin: bars on the diagonal mean honest probabilities.",
    "Precision-recall": "Each class's precision against recall as its threshold falls; the dot is the "
    "threshold chosen on validation (highest F1 there).",
}


def _multilabel(metrics: dict) -> bool:
    return metrics.get("task") == "multilabel"


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


def _duration(seconds) -> str:
    if seconds is None:
        return "?"
    minutes, seconds = divmod(round(float(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours} h {minutes:02d} min"
        if hours
        else f"{minutes} min {seconds:02d} s"
        if minutes
        else f"{seconds} s"
    )


def headline(config: dict, metrics: dict) -> str:
    """The numbers people open a report for, as cards, and one sentence that says what they mean."""
    epochs = config.get("resolved", {}).get("epochs")
    shown = MULTILABEL_HEADLINE if _multilabel(metrics) else HEADLINE
    cards = [(label, format_cell(metrics.get(key), spec)) for label, key, spec in shown if key in metrics]
    cards.append(
        ("best epoch", f"{metrics.get('best_epoch', '?')} of {epochs if epochs is not None else '?'}")
    )
    cards.append(("training time", _duration(metrics.get("train_seconds"))))
    stats = "".join(
        f'<div class="stat"><span class="value">{_escape(value)}</span>'
        f'<span class="label">{_escape(label)}</span></div>'
        for label, value in cards
    )
    classes = config.get("class_names") or list(metrics.get("per_class", {}))
    chance = f"; chance is {1 / len(classes):.1%}" if classes else ""
    backbone = _escape(config.get("arguments", {}).get("backbone"))
    if _multilabel(metrics):
        sentence = (
            f"{backbone} ranked {metrics.get('test_examples', '?')} test images for each of {len(classes)} "
            f"classes with a mean average precision of {format_cell(metrics.get('test_map'), '.3f')} (a "
            f"random ranking scores each class's frequency); every class was right for "
            f"{format_cell(metrics.get('test_accuracy'), '.1%')} of the images."
        )
    else:
        sentence = (
            f"{backbone} classified {format_cell(metrics.get('test_accuracy'), '.1%')} of "
            f"{metrics.get('test_examples', '?')} test images correctly across {len(classes)} "
            f"classes{chance}."
        )
    return f'<div class="headline">{stats}</div><p class="summary">{sentence}</p>'


def _card(title: str, body: str, wide: bool = False) -> str:
    kind = "card table" if wide else "card"
    return f'<div class="{kind}"><h3>{_escape(title)}</h3><div class="scroll">{body}</div></div>'


def _figure(title: str, path: Path, caption: str, wide: bool = False) -> str:
    return (
        f'<figure class="card{" wide" if wide else ""}"><h3>{_escape(title)}</h3>{image(path, title)}'
        f"<figcaption>{_escape(caption)}</figcaption></figure>"
    )


def run_section(
    run_dir: str | os.PathLike,
    zoo: str | os.PathLike | None = None,
    *,
    page_dir: str | os.PathLike | None = None,
    heading: bool = True,
) -> str:
    """One run's part of a page; the exports of the run that ``zoo`` (if given) holds are listed.

    Paths are shown relative to ``page_dir`` (the folder the page is written to, by default the run's):
    the page is moved and shared, and this machine's absolute paths mean nothing there.
    """
    run = Run(run_dir)
    page_dir = Path(page_dir) if page_dir is not None else run.path
    config = run.read_config()
    metrics = run.read_metrics() if run.finished else {}
    arguments, resolved = config.get("arguments", {}), config.get("resolved", {})
    data = arguments.get("data")
    if isinstance(data, str) and os.path.isabs(data):  # a folder or file, not a name such as scenes:30,10
        data = _relative(data, page_dir)
    parts = ["<section>"]
    if heading:
        parts.append(f"<h2>{_escape(run.path.name)}</h2>")
    parts.append(
        f'<p class="subtitle">{_escape(arguments.get("backbone"))} on {_escape(data)} · '
        f"weights {_escape(arguments.get('weights'))} · {_escape(resolved.get('schedule'))} schedule · "
        f"{_escape(resolved.get('image_size'))} px · started {_escape(config.get('created', '?'))}</p>"
    )
    if not metrics:
        parts.append('<p class="missing">Not evaluated yet (the run was stopped before its evaluation).</p>')
    else:
        parts.append(headline(config, metrics))
    cards = [
        _card(
            "Configuration",
            _pairs(
                [
                    (label, data if key == "data" else config.get(part, {}).get(key))
                    for label, part, key in CONFIG_ROWS
                ]
            ),
        )
    ]
    multilabel = _multilabel(metrics)
    if metrics:
        k = metrics.get("top_k", "k")
        rows = [
            (label.replace("top-k", f"top-{k}"), format_cell(metrics.get(key), spec))
            for label, key, spec in (MULTILABEL_METRIC_ROWS if multilabel else METRIC_ROWS)
            if key in metrics
        ]
        cards.append(_card("Test metrics", _pairs(rows)))
        per_class = [{"class": name, **values} for name, values in metrics.get("per_class", {}).items()]
        columns = [
            ("class", "class", ""),
            ("precision", "precision", ".3f"),
            ("recall", "recall", ".3f"),
            ("f1", "F1", ".3f"),
            ("support", "support", "d"),
        ]
        cards.append(
            _card("Per class", table(per_class, MULTILABEL_PER_CLASS if multilabel else columns), wide=True)
        )
    parts.append(f'<div class="columns">{"".join(cards)}</div>')
    grad_cam = metrics.get("mistakes_grad_cam", True)
    mistakes = "Highest-loss test images" + (" (Grad-CAM for the predicted class)" if grad_cam else "")
    # The wide figures (two panels, a grid of images) take a whole row; the square ones share one.
    shown = (
        (("Curves", run.curves_path), ("Precision-recall", run.precision_recall_path))
        if multilabel
        else (
            ("Curves", run.curves_path),
            ("Confusion matrix", run.confusion_path),
            ("Reliability", run.reliability_path),
        )
    )
    figures = [_figure(title, path, FIGURE_CAPTIONS[title], wide=title == "Curves") for title, path in shown]
    figures += (
        []
        if multilabel
        else [
            _figure(
                mistakes,
                run.mistakes_path(),
                "The test images the model got most wrong: true and predicted class with its probability"
                + ("; the overlay shows where the model looked." if grad_cam else "."),
                wide=True,
            )
        ]
    )
    parts.append(f'<h2>Figures</h2><div class="figures">{"".join(figures)}</div>')
    parts.append(_skipped(run))
    exports = _exports(run, zoo)
    if zoo is not None:  # a run's own page, written as it finishes, has nothing exported yet
        shown = [{**e, "path": _relative(e.get("path"), page_dir)} for e in exports]
        columns = [
            ("name", "name", ""),
            ("version", "version", "d"),
            ("path", "path", ""),
            ("exported", "exported", ""),
        ]
        parts.append(f"<h2>Zoo exports ({len(exports)}, in {_escape(_relative(zoo, page_dir))})</h2>")
        if shown:
            parts.append(f'<div class="scroll">{table(shown, columns)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _relative(path, start: Path) -> str:
    """``path`` from the page's folder: the same link on any machine the run folder is copied to."""
    if path is None:
        return ""
    return os.path.relpath(Path(path).resolve(), start.resolve())


def _skipped(run: Run) -> str:
    """The skipped files, relative to the folder they share (the data set's), with the reason for each."""
    lines = run.skipped_path.read_text(encoding="utf-8").splitlines() if run.skipped_path.exists() else []
    rows = [dict(zip(("file", "reason"), line.split("\t", 1))) for line in lines if line]
    title = f"<h2>Skipped files ({len(rows)})</h2>"
    if not rows:
        return title + "<p>None: every file was read.</p>"
    common = os.path.commonpath([os.path.dirname(r["file"]) for r in rows])
    for row in rows:
        row["file"] = os.path.relpath(row["file"], common)
    where = f"<p>In the data folder <code>{_escape(Path(common).name)}</code>.</p>"
    return (
        title
        + where
        + f'<div class="scroll">{table(rows, [("file", "file", ""), ("reason", "reason", "")])}</div>'
    )


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
        f"<body><main><h1>{_escape(title)}</h1>\n{body}\n</main></body></html>\n"
    )


def write_run_report(run_dir: str | os.PathLike, zoo: str | os.PathLike | None = None) -> Path:
    """(Re)write ``report.html`` in the run directory, listing the exports ``zoo`` holds (if given)."""
    run = Run(run_dir)
    body = run_section(run.path, zoo, heading=False)  # the page's title names the run once
    return write_text(run.report_path, page(f"kerasimg run {run.path.name}", body))


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
    page_dir = Path(out).resolve().parent
    sections = "\n".join(run_section(d, zoo, page_dir=page_dir) for d in run_dirs)
    summary = f'<div class="scroll">{table(rows, SUMMARY_COLUMNS)}</div>'
    body = f'{intro}<h2>Summary</h2>{summary}<div class="runs">{sections}</div>'
    return write_text(out, page(title, body))
