from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from plugkit.plugins.retrieval.parsing import CorruptFileError, UnsupportedFileError, extract_text, sniff
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
    assert extract_text(b"# Title\n\nbody", "notes.md") == ("md", "# Title\n\nbody")
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
