"""An audit's folder: ``audit.csv``, ``label_ranking.csv``, ``audit.json`` and ``audit.html``.

``AuditDir`` is the one place that spells these names. ``audit.csv`` has one row per flagged
file and issue (``fit --exclude`` reads it); ``label_ranking.csv`` every training image, the
likeliest mislabelled first, with its out-of-fold probabilities (``p_<class>``);
``audit.html`` thumbnails grouped by issue, embedded as ``data:`` URIs so the page opens
from ``file://`` with no network.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

from PIL import Image

from kerasimg.files import write_json, write_text
from kerasimg.tables import Column, write_csv

AUDIT_COLUMNS: list[Column] = [
    ("file", "file", ""),
    ("split", "split", ""),
    ("issue", "issue", ""),
    ("score", "score", ".4f"),
    ("given_label", "given label", ""),
    ("suggested_label", "suggested label", ""),
    ("duplicate_of", "duplicate of", ""),
    ("detail", "detail", ""),
]
RANKING_COLUMNS: list[Column] = [
    ("rank", "rank", "d"),
    ("file", "file", ""),
    ("split", "split", ""),
    ("score", "score", ".4f"),
    ("given_label", "given label", ""),
    ("suggested_label", "suggested label", ""),
    ("flagged", "flagged", ""),
]
ISSUE_TITLES = {
    "label": "Label issues (lowest self-confidence first: the given label is likely wrong)",
    "duplicate": "Duplicates (the flagged copy, then the one it duplicates)",
    "outlier": "Outliers (far from every class)",
}
THUMBNAIL = 96
PAGE_LIMIT = 120  # thumbnails per issue; the rest are in audit.csv
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:.6em}figure{margin:0;width:210px;font-size:.75em}
figure img{width:96px;height:96px;object-fit:contain;background:#eee;margin-right:2px}
figcaption{word-break:break-all}.warn{color:#a00}
"""


class AuditDir:
    """The layout of one audit's output folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def table_path(self) -> Path:
        return self.path / "audit.csv"

    @property
    def ranking_path(self) -> Path:
        return self.path / "label_ranking.csv"

    @property
    def summary_path(self) -> Path:
        return self.path / "audit.json"

    @property
    def page_path(self) -> Path:
        return self.path / "audit.html"

    @property
    def features_dir(self) -> Path:
        return self.path / "features"

    def write(self, rows: list[dict], ranking: list[dict], summary: dict) -> None:
        write_csv(self.table_path, rows, AUDIT_COLUMNS)
        # Then each class's out-of-fold probability, so another ranking needs no new audit.
        probabilities = [(k, k, ".6f") for k in (ranking[0] if ranking else {}) if k.startswith("p_")]
        write_csv(self.ranking_path, ranking, RANKING_COLUMNS + probabilities)
        write_json(self.summary_path, summary)
        write_text(self.page_path, page(rows, summary))


def thumbnail(path: str) -> str:
    """A small JPEG of the image as a ``data:`` URI ('' when it cannot be read)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80)
    except OSError:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(row: dict) -> str:
    images = [row["file"]] + ([row["duplicate_of"]] if row.get("duplicate_of") else [])
    pictures = "".join(f'<img src="{thumbnail(p)}" alt="{html.escape(p)}">' for p in images)
    labels = html.escape(str(row.get("given_label") or ""))
    if row.get("suggested_label"):
        labels += " &rarr; " + html.escape(str(row["suggested_label"]))
    caption = (
        f"{html.escape(os.path.basename(row['file']))} ({html.escape(row['split'])}) {labels} "
        f"score {row['score']:.3f}<br>{html.escape(str(row.get('detail') or ''))}"
    )
    return f"<figure>{pictures}<figcaption>{caption}</figcaption></figure>"


def page(rows: list[dict], summary: dict) -> str:
    sections = []
    for issue, title in ISSUE_TITLES.items():
        group = [r for r in rows if r["issue"] == issue]
        more = f"<p>{len(group) - PAGE_LIMIT} more in audit.csv.</p>" if len(group) > PAGE_LIMIT else ""
        figures = "".join(_figure(r) for r in group[:PAGE_LIMIT]) or "<p>None found.</p>"
        sections.append(
            f'<section id="{issue}"><h2>{html.escape(title)}: {len(group)}</h2>'
            f'<div class="grid">{figures}</div>{more}</section>'
        )
    warnings = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in summary.get("warnings", []))
    counts = ", ".join(f"{html.escape(k)} {v}" for k, v in summary["class_counts"].items())
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>kerasimg audit of {html.escape(summary['data'])}</title><style>{STYLE}</style></head><body>"
        f"<h1>Audit of {html.escape(summary['data'])}</h1>"
        f"<p>{summary['images']} images; training images per class: {counts}. "
        f"Probabilities: {html.escape(summary['method'])}, {summary['folds']} folds.</p>"
        f"{warnings}{''.join(sections)}</body></html>"
    )
