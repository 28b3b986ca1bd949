from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest

from plugkit.plugins.retrieval.parsing import CorruptFileError, UnsupportedFileError, extract, extract_text, sniff
from tests.plugins.retrieval.files import (
    PNG_BYTES,
    docx_bytes,
    encrypted_pdf_bytes,
    pdf_bytes,
    pptx_bytes,
    xlsx_bytes,
    zip_bytes,
)


def test_pdf_text_is_extracted_whatever_the_file_name() -> None:
    kind, text = extract_text(pdf_bytes(["Photosynthesis makes sugar.", "Plants need light."]), "upload.bin")
    assert kind == "pdf"
    assert "Photosynthesis makes sugar." in text and "Plants need light." in text


def test_encrypted_pdf_is_refused_as_corrupt_naming_pdf() -> None:
    with pytest.raises(CorruptFileError, match="encrypted") as caught:
        extract_text(encrypted_pdf_bytes(["secret plans"]))
    assert caught.value.kind == "pdf" and caught.value.status == 422


def test_truncated_pdf_is_refused_as_corrupt_pdf() -> None:
    with pytest.raises(CorruptFileError) as caught:
        extract_text(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    assert caught.value.kind == "pdf"


def test_docx_paragraphs_and_tables_are_extracted() -> None:
    data = docx_bytes(["Quarterly report", "Revenue grew."], table=[["region", "sales"], ["north", "42"]])
    kind, text = extract_text(data, None, "application/octet-stream")
    assert kind == "docx"
    assert "Revenue grew." in text and "north\t42" in text


def test_pptx_slides_are_extracted_in_order() -> None:
    kind, text = extract_text(pptx_bytes([("Intro", "Hello deck"), ("Results", "It worked")]))
    assert kind == "pptx"
    assert text.index("Hello deck") < text.index("It worked")
    assert "Slide 2" in text


def test_xlsx_cells_are_extracted_per_sheet() -> None:
    kind, text = extract_text(xlsx_bytes([["name", "score"], ["ada", 99]], title="Scores"))
    assert kind == "xlsx"
    assert "Sheet Scores" in text and "ada\t99" in text


def test_csv_rows_become_lines() -> None:
    kind, text = extract_text(b"city,country\nParis,France\nLima,Peru\n", "places.csv")
    assert kind == "csv"
    assert text.splitlines()[1] == "Paris, France"


def test_json_is_sniffed_without_a_file_name_and_flattened() -> None:
    kind, text = extract_text(json.dumps({"title": "Notes", "tags": ["a", "b"]}).encode())
    assert kind == "json"
    assert "title: Notes" in text and "tags: b" in text


def test_html_text_is_extracted_without_scripts() -> None:
    data = b"<!doctype html><html><head><script>var x = 1;</script></head><body><h1>Hi</h1><p>there</p></body></html>"
    kind, text = extract_text(data, "page.bin")
    assert kind == "html"
    assert text == "Hi\nthere"


def test_markdown_and_plain_text_are_read_as_text() -> None:
    assert extract_text(b"# Title\n\nbody", "notes.md") == ("md", "Title\n\nbody")
    assert extract_text("héllo wörld".encode(), None) == ("txt", "héllo wörld")


def test_utf16_text_with_a_bom_is_decoded() -> None:
    assert extract_text("grüße".encode("utf-16"))[1] == "grüße"


def test_png_is_unsupported_and_named() -> None:
    with pytest.raises(UnsupportedFileError, match="PNG image") as caught:
        sniff(PNG_BYTES, "photo.txt", "text/plain")
    assert caught.value.status == 415


def test_plain_zip_archive_is_unsupported_for_upload() -> None:
    with pytest.raises(UnsupportedFileError) as caught:
        sniff(zip_bytes({"a.txt": b"hello"}))
    assert caught.value.kind == "zip"


def test_legacy_ole_office_file_is_unsupported() -> None:
    with pytest.raises(UnsupportedFileError, match="OLE"):
        sniff(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)


def test_binary_data_of_unknown_type_is_unsupported() -> None:
    with pytest.raises(UnsupportedFileError, match="binary"):
        sniff(bytes(range(256)) * 4)


def test_damaged_docx_is_corrupt_docx() -> None:
    archive = zip_bytes({"word/document.xml": b"<not xml", "[Content_Types].xml": b"<Types/>"})
    with pytest.raises(CorruptFileError) as caught:
        extract_text(archive)
    assert caught.value.kind == "docx"


def test_office_zip_bomb_is_refused_before_parsing() -> None:
    archive = zip_bytes({"word/document.xml": b"\x00" * (20 * 1024 * 1024)})
    with pytest.raises(CorruptFileError, match="expands"):
        sniff(archive)


def test_invalid_json_named_json_is_corrupt() -> None:
    with pytest.raises(CorruptFileError) as caught:
        sniff(b"{not json", "data.json")
    assert caught.value.kind == "json"


def test_external_entities_in_office_xml_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    original = zipfile.ZipFile(io.BytesIO(docx_bytes(["placeholder"])))
    members = {name: original.read(name) for name in original.namelist()}
    xml = members["word/document.xml"].decode()
    doctype = f'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file://{secret}">]>'
    xml = xml.replace("?>", "?>" + doctype, 1).replace("placeholder", "&xxe;")
    members["word/document.xml"] = xml.encode()
    try:
        _kind, text = extract_text(zip_bytes(members))
    except CorruptFileError:
        return  # refusing the file is as safe as not resolving the entity
    assert "TOP-SECRET-VALUE" not in text


def test_pptx_speaker_notes_and_tables_are_read() -> None:
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[5])
    slide.shapes.title.text = "Roadmap"
    slide.notes_slide.notes_text_frame.text = "Mention the hiring freeze."
    table = slide.shapes.add_table(1, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    table.cell(0, 0).text, table.cell(0, 1).text = "Q1", "launch"
    text = extract_text(save(presentation))[1]
    assert "Roadmap" in text and "Mention the hiring freeze." in text and "Q1\tlaunch" in text


def test_docx_headers_and_footers_are_read_once() -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("The body.")
    document.sections[0].header.paragraphs[0].text = "ACME Confidential"
    document.sections[0].footer.paragraphs[0].text = "Printed in Lisbon"
    document.add_section()  # linked to the first: its header is the same and must not be read twice
    document.add_paragraph("Second section.")
    text = extract_text(save(document))[1]
    assert text.count("ACME Confidential") == 1 and text.count("Printed in Lisbon") == 1
    assert "The body." in text and "Second section." in text


def test_a_pptx_without_text_is_empty_as_an_empty_docx_is() -> None:
    import docx
    from pptx import Presentation

    presentation = Presentation()
    presentation.slides.add_slide(presentation.slide_layouts[6])  # blank layout: no placeholders
    assert extract_text(save(presentation)) == ("pptx", "")
    assert extract_text(save(docx.Document())) == ("docx", "")


def test_office_line_breaks_become_newlines_not_vertical_tabs() -> None:
    from pptx import Presentation

    presentation = Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    slide.shapes.title.text = "Title"
    slide.placeholders[1].text_frame.text = "first line\vsecond line"  # python-pptx writes <a:br/>
    text = extract_text(save(presentation))[1]
    assert "\x0b" not in text and "first line\nsecond line" in text


def test_markdown_is_indexed_as_text_and_its_links_are_kept_apart() -> None:
    source = (
        "# plugkit\n\n"
        "[![build](https://img.example.org/badge.svg)](https://ci.example.org/plugkit)\n\n"
        "Read [the docs](https://docs.example.org/) or run `make test`.\n\n"
        "```sh\nmake run\n```\n\n<div align=center>raw html</div>\n"
    )
    found = extract(source.encode(), "README.md")
    assert found.kind == "md"
    assert found.text == "plugkit\n\nRead the docs or run make test.\n\nmake run"
    assert found.links == ("https://ci.example.org/plugkit", "https://docs.example.org/")


def test_pypdf_warnings_about_a_damaged_pdf_name_the_file(caplog: pytest.LogCaptureFixture) -> None:
    data = pdf_bytes(["Hello world"])
    start = data.index(b"xref\n")
    lines = data[start:].split(b"\n")
    lines[3] = b"%010d 00000 n " % (int(lines[3][:10]) + 3)  # object 1's offset now points 3 bytes too far
    with caplog.at_level(logging.WARNING, logger="plugkit.retrieval"):
        assert extract_text(data[:start] + b"\n".join(lines), "minutes-2024.pdf") == ("pdf", "Hello world")
    messages = [r.getMessage() for r in caplog.records if r.name == "plugkit.retrieval"]
    assert any(m.startswith("minutes-2024.pdf: Ignoring wrong pointing object 1 0") for m in messages), messages


def save(document: Any) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
