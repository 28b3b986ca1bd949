"""Text extraction from uploaded files, by content sniffing (the client's Content-Type and file name are only hints).

Each file is parsed from its own temporary directory. A type we do not read is an UnsupportedFileError (415); a file
that claims a type we read but cannot be read as one is a CorruptFileError (422); both name the type found.
Markdown is read as text (markdown-it-py's parse) with its links kept apart; pypdf's warnings about a damaged file are
logged with the file's name.
"""

from __future__ import annotations

import contextvars
import csv
import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("plugkit.retrieval")

TEXT_KINDS = ("csv", "json", "html", "md", "txt")
KINDS = ("pdf", "docx", "pptx", "xlsx", *TEXT_KINDS)
MAX_UNCOMPRESSED = 512 * 1024 * 1024  # Office files are zip archives: refuse bombs before a library opens them
MAX_RATIO = 200

BINARY_SIGNATURES: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"ID3", "MP3 audio"),
    (b"OggS", "Ogg media"),
    (b"%!PS", "PostScript document"),
    (b"{\\rtf", "RTF document"),
]
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class FileError(ValueError):
    """A file that cannot be turned into text; `kind` is the type that was found."""

    status = 422

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class UnsupportedFileError(FileError):
    status = 415


class CorruptFileError(FileError):
    status = 422


def _zip_kind(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            total = sum(i.file_size for i in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise CorruptFileError(f"the file is a damaged zip archive: {exc}", "zip") from exc
    if "word/document.xml" in names:
        kind = "docx"
    elif "ppt/presentation.xml" in names:
        kind = "pptx"
    elif "xl/workbook.xml" in names:
        kind = "xlsx"
    elif "mimetype" in names and any(n.startswith("META-INF/") for n in names):
        raise UnsupportedFileError("OpenDocument and EPUB files are not supported; save as docx, pptx or xlsx", "odf")
    else:
        raise UnsupportedFileError("zip archives are not supported for upload; use `plugkit ingest` for them", "zip")
    if total > MAX_UNCOMPRESSED or total > MAX_RATIO * max(len(data), 1):
        raise CorruptFileError(f"the {kind} file expands to {total} bytes, too much for its size", kind)
    return kind


def sniff(data: bytes, filename: str | None = None, content_type: str | None = None) -> str:
    """The kind of file `data` holds: one of KINDS. Raises UnsupportedFileError naming what was found otherwise."""
    if data.startswith(b"%PDF-") or data[:1024].lstrip().startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _zip_kind(data)
    if data.startswith(OLE):
        raise UnsupportedFileError(
            "an OLE compound file (a legacy .doc/.xls/.ppt, or an encrypted Office file): save it unencrypted as "
            "docx, pptx or xlsx",
            "ole",
        )
    for signature, name in BINARY_SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedFileError(f"the file is a {name}, which holds no text to index", name)
    text = decode_text(data)
    suffix = Path(filename or "").suffix.lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    head = text.lstrip()[:512].lower()
    if suffix == ".csv" or ctype == "text/csv":
        return "csv"
    if head.startswith(("{", "[")) and suffix not in (".md", ".txt"):
        try:
            json.loads(text)
            return "json"
        except ValueError:
            if suffix == ".json" or ctype == "application/json":
                raise CorruptFileError("the file is not valid JSON", "json") from None
    if head.startswith(("<!doctype html", "<html")) or suffix in (".html", ".htm") or ctype == "text/html":
        return "html"
    if suffix in (".md", ".markdown") or ctype == "text/markdown":
        return "md"
    return "txt"


def decode_text(data: bytes) -> str:
    """`data` as text (UTF-8, UTF-16 with a BOM, else Latin-1 when it looks like text). Binary data is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:8192]:
        raise UnsupportedFileError("the file is binary data of an unknown type", "binary")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        sample = data[:8192]
        controls = sum(b < 32 and b not in (9, 10, 12, 13) for b in sample)
        if controls > len(sample) // 100:
            raise UnsupportedFileError("the file is binary data of an unknown type", "binary") from None
        return data.decode("latin-1")


@dataclass(frozen=True)
class Extracted:
    """What a file holds: its kind, its text, and the links it names (Markdown's, so far), in order."""

    kind: str
    text: str
    links: tuple[str, ...] = field(default=())


# Office formats write a soft line break as a vertical tab, and a page or section break as a form feed.
_LINE_BREAKS = str.maketrans({"\x0b": "\n", "\x0c": "\n"})
_FILE_NAME: contextvars.ContextVar[str] = contextvars.ContextVar("plugkit_parsed_file", default="an upload")


def extract(data: bytes, filename: str | None = None, content_type: str | None = None) -> Extracted:
    """The kind, text and links of a file; the file is written to and read from its own temporary directory."""
    kind = sniff(data, filename, content_type)
    links: list[str] = []
    token = _FILE_NAME.set(filename or "an upload")
    try:
        with tempfile.TemporaryDirectory(prefix="plugkit-upload-") as tmp:
            path = Path(tmp) / f"upload.{kind}"
            path.write_bytes(data)
            try:
                text = _read_markdown(path, links) if kind == "md" else READERS[kind](path)
            except FileError:
                raise
            except Exception as exc:  # each library has its own error types for a damaged file
                raise CorruptFileError(
                    f"the file looks like {kind} but cannot be read: {type(exc).__name__}: {exc}", kind
                ) from exc
    finally:
        _FILE_NAME.reset(token)
    return Extracted(kind, text.translate(_LINE_BREAKS).strip(), tuple(dict.fromkeys(links)))


def extract_text(data: bytes, filename: str | None = None, content_type: str | None = None) -> tuple[str, str]:
    """(kind, text) of a file (see `extract`)."""
    found = extract(data, filename, content_type)
    return found.kind, found.text


class _NamedFileHandler(logging.Handler):
    """pypdf logs what it repairs ("Ignoring wrong pointing object 2 0") without saying which file: log it again
    through plugkit's logger, with the name of the file being read in this thread."""

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, "%s: %s (pypdf)", _FILE_NAME.get(), record.getMessage())


def _name_pypdf_warnings() -> None:
    pypdf_log = logging.getLogger("pypdf")
    if not any(isinstance(h, _NamedFileHandler) for h in pypdf_log.handlers):
        pypdf_log.addHandler(_NamedFileHandler())
        pypdf_log.propagate = False


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader

    _name_pypdf_warnings()
    reader = PdfReader(path)
    if reader.is_encrypted:
        try:
            opened = bool(reader.decrypt(""))
        except Exception:  # pypdf raises several kinds here, e.g. for an unsupported cipher
            opened = False
        if not opened:
            raise CorruptFileError("the PDF is encrypted with a password", "pdf")
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)


def _read_docx(path: Path) -> str:
    import docx

    document = docx.Document(str(path))
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append("\t".join(cell.text for cell in row.cells))
    # headers and footers once each, though every section (and first/even page variant) may repeat them
    margins: dict[str, None] = {}
    for section in document.sections:
        for part in (
            section.header,
            section.first_page_header,
            section.even_page_header,
            section.footer,
            section.first_page_footer,
            section.even_page_footer,
        ):
            if part.is_linked_to_previous:
                continue
            text = "\n".join(p.text for p in part.paragraphs).strip()
            if text:
                margins[text] = None
    return "\n".join([*parts, *margins])


def _read_pptx(path: Path) -> str:
    from pptx import Presentation

    presentation = Presentation(str(path))
    slides = []
    for number, slide in enumerate(presentation.slides, start=1):
        texts = [shape.text_frame.text for shape in slide.shapes if getattr(shape, "has_text_frame", False)]
        for shape in slide.shapes:
            if getattr(shape, "has_table", False):
                texts += ["\t".join(cell.text for cell in row.cells) for row in shape.table.rows]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            texts.append(slide.notes_slide.notes_text_frame.text)
        texts = [t for t in texts if t.strip()]
        if texts:  # a slide without text adds no bare label: a deck without text is empty, as an empty docx is
            slides.append(f"Slide {number}\n" + "\n".join(texts))
    return "\n\n".join(slides)


def _read_xlsx(path: Path) -> str:
    import openpyxl  # uses defusedxml when it is installed (it is a dependency of the retrieval extra)

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        sheets = []
        for sheet in workbook.worksheets:
            rows = [
                "\t".join("" if v is None else str(v) for v in row)
                for row in sheet.iter_rows(values_only=True)
                if any(v is not None for v in row)
            ]
            sheets.append(f"Sheet {sheet.title}\n" + "\n".join(rows))
        return "\n\n".join(sheets)
    finally:
        workbook.close()


def _read_csv(path: Path) -> str:
    text = decode_text(path.read_bytes())
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    return "\n".join(", ".join(row) for row in csv.reader(io.StringIO(text), dialect) if any(row))


def _flatten(value: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _flatten(item, prefix)
    elif value is not None:
        yield f"{prefix}: {value}" if prefix else str(value)


def _read_json(path: Path) -> str:
    return "\n".join(_flatten(json.loads(decode_text(path.read_bytes()))))


def _read_html(path: Path) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _read_markdown(path: Path, links: list[str]) -> str:
    """Markdown as the text a reader sees: markup, images (badges) and raw HTML left out, link texts kept, and the
    links' targets appended to `links` (an image's URL is not a link a reader follows)."""
    from markdown_it import MarkdownIt

    blocks: list[str] = []
    for token in MarkdownIt("commonmark").enable("table").parse(decode_text(path.read_bytes())):
        if token.type in ("fence", "code_block"):
            blocks.append(token.content.rstrip("\n"))
        elif token.type == "inline":
            words: list[str] = []
            for child in token.children or ():
                if child.type in ("text", "code_inline"):
                    words.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    words.append("\n")
                elif child.type == "link_open" and isinstance(href := child.attrs.get("href"), str):
                    links.append(href)
            if text := "".join(words).strip():
                blocks.append(text)
    return "\n\n".join(blocks)


def _read_text(path: Path) -> str:
    return decode_text(path.read_bytes())


READERS = {
    "pdf": _read_pdf,
    "docx": _read_docx,
    "pptx": _read_pptx,
    "xlsx": _read_xlsx,
    "csv": _read_csv,
    "json": _read_json,
    "html": _read_html,
    "md": lambda path: _read_markdown(path, []),
    "txt": _read_text,
}
