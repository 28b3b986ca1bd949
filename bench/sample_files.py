"""Real files of every format the retrieval plugin reads, written by the libraries of each format from one text
(this repository's README), for the parsing and upload benchmarks. Nothing is fetched."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def source_paragraphs() -> list[str]:
    """The README's paragraphs as plain sentences (Markdown marks removed), the text every file is made of."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        plain = re.sub(r"[`*#|>\[\]]", "", block)
        plain = re.sub(r"\s+", " ", plain).strip()
        if len(plain) > 40:
            paragraphs.append(plain)
    return paragraphs


def paragraphs_of(chars: int) -> list[str]:
    """About `chars` characters of paragraphs, the README's repeated as needed."""
    source, out, size = source_paragraphs(), [], 0
    while size < chars:
        paragraph = source[len(out) % len(source)]
        out.append(paragraph)
        size += len(paragraph) + 2
    return out


def markdown_bytes(chars: int) -> bytes:
    """The README itself, repeated to `chars` characters: headings, badges, links, code, tables."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    badge = "[![build](https://img.example.org/badge.svg)](https://ci.example.org/plugkit)\n\n"
    return ((badge + text + "\n\n") * (chars // len(text) + 1))[:chars].encode()


def pdf_bytes(pages: int) -> bytes:
    """A PDF of `pages` pages of wrapped paragraphs (reportlab)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    story: list[object] = []
    source = source_paragraphs()
    for page in range(pages):
        story.append(Paragraph(f"Part {page + 1}", styles["Heading2"]))
        for i in range(6):
            text = source[(page * 6 + i) % len(source)][:600]
            story.append(Paragraph(text.replace("&", "&amp;").replace("<", "&lt;"), styles["BodyText"]))
        story.append(PageBreak())
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4).build(story)
    return out.getvalue()


def docx_bytes(chars: int) -> bytes:
    import docx

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "plugkit: design notes"
    document.sections[0].footer.paragraphs[0].text = "Internal, do not distribute"
    for paragraph in paragraphs_of(chars):
        document.add_paragraph(paragraph)
    table = document.add_table(rows=3, cols=2)
    for r, (name, port) in enumerate([("sports", "5001"), ("todo", "5002"), ("retrieval", "5003")]):
        table.cell(r, 0).text, table.cell(r, 1).text = name, port
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_bytes(slides: int) -> bytes:
    from pptx import Presentation

    presentation = Presentation()
    source = source_paragraphs()
    for n in range(slides):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = f"Slide about part {n + 1}"
        slide.placeholders[1].text_frame.text = source[n % len(source)][:300]
        slide.notes_slide.notes_text_frame.text = "Speaker notes: " + source[(n + 1) % len(source)][:300]
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def xlsx_bytes(rows: int) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["n", "paragraph"])
    for n, paragraph in enumerate(paragraphs_of(rows * 200)[:rows]):
        sheet.append([n, paragraph[:200]])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def html_bytes(chars: int) -> bytes:
    body = "".join(f"<p>{p.replace('&', '&amp;').replace('<', '&lt;')}</p>\n" for p in paragraphs_of(chars))
    page = f"<!doctype html><html><head><title>plugkit</title><style>p{{margin:0}}</style></head><body>{body}"
    return (page + "<script>console.log('not text')</script></body></html>").encode()


def csv_bytes(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["n", "paragraph"])
    for n, paragraph in enumerate(paragraphs_of(rows * 200)[:rows]):
        writer.writerow([n, paragraph[:200]])
    return out.getvalue().encode()


def json_bytes(items: int) -> bytes:
    records = [
        {"id": n, "body": p[:300], "tags": ["readme", "plugkit"]}
        for n, p in enumerate(paragraphs_of(items * 300)[:items])
    ]
    return json.dumps({"title": "plugkit notes", "items": records}).encode()


def txt_bytes(chars: int) -> bytes:
    return "\n\n".join(paragraphs_of(chars)).encode()


def files_by_format() -> dict[str, list[tuple[str, bytes]]]:
    """Three files per format, small to large."""
    return {
        "pdf": [(f"doc{n}.pdf", pdf_bytes(n)) for n in (1, 5, 19)],
        "docx": [(f"doc{n}.docx", docx_bytes(n)) for n in (2_000, 16_000, 64_000)],
        "pptx": [(f"deck{n}.pptx", pptx_bytes(n)) for n in (3, 12, 40)],
        "xlsx": [(f"sheet{n}.xlsx", xlsx_bytes(n)) for n in (10, 100, 400)],
        "md": [(f"notes{n}.md", markdown_bytes(n)) for n in (2_000, 16_000, 64_000)],
        "html": [(f"page{n}.html", html_bytes(n)) for n in (2_000, 16_000, 64_000)],
        "csv": [(f"table{n}.csv", csv_bytes(n)) for n in (10, 100, 400)],
        "json": [(f"items{n}.json", json_bytes(n)) for n in (10, 50, 200)],
        "txt": [(f"text{n}.txt", txt_bytes(n)) for n in (2_000, 16_000, 64_000)],
    }
