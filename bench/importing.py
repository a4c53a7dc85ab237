"""Benchmark manuscript import (``audiobook init``) on 2.5 MB books, against reading and writing the same bytes.

    python bench/importing.py              # 2.5 MB of text as plain text, EPUB and DOCX
    python bench/importing.py --mb 0.5     # smaller books

Three books of about ``--mb`` MB of UTF-8 text each:

* **plain text**: the Chinese classic ``shared/corpora/hongloumeng.txt`` (120 chapters headed
  ``第一回 ...``), cut or repeated to the size;
* **EPUB**: *The Salt Road*, the project's sample EPUB (``tests/import_books.py``: front matter, a
  shared file cut at a TOC anchor, notes, index), each chapter's paragraphs repeated to the size;
* **DOCX**: ``shared/corpora/alice.txt``'s chapters, repeated to the size, as Heading 1 and Normal
  paragraphs of a minimal Word package.

Each import runs in a fresh process (``init_folder``: read the whole source, classify its parts, write
``book.yaml`` and every chapter file), so its peak memory (``ru_maxrss``) is its own. The baseline, in
the same run and also in a fresh process, reads the source file, decodes its text and writes the same
number of files of the same total size: what any import costs at least. Aim: an import under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
CORPORA = ROOT.parent / "shared" / "corpora"
AIM_S = 2.0


def make_plain(path: Path, mb: float) -> Path:
    text = (CORPORA / "hongloumeng.txt").read_text(encoding="utf-8")
    size = int(mb * 1_000_000)
    data = text.encode("utf-8")
    while len(data) < size:
        data += b"\n\n" + text.encode("utf-8")
    cut = data[:size].decode("utf-8", errors="ignore")
    path.write_text(cut[: cut.rfind("\n")], encoding="utf-8")
    return path


def make_epub(path: Path, mb: float) -> Path:
    from import_books import build_sample_epub

    fixed = _text_bytes(build_sample_epub(path, scale=1))
    per_scale = _text_bytes(build_sample_epub(path, scale=2)) - fixed  # the chapters' text grows, the rest not
    return build_sample_epub(path, scale=max(1, 1 + round((mb * 1_000_000 - fixed) / per_scale)))


def _text_bytes(epub: Path) -> int:
    import zipfile

    from lxml import etree

    with zipfile.ZipFile(epub) as archive:
        return sum(len("".join(etree.fromstring(archive.read(n)).itertext()).encode("utf-8"))
                   for n in archive.namelist() if n.endswith(".xhtml"))


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_DOCX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        '<Override PartName="/word/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>'
        '<Override PartName="/docProps/core.xml" '
        'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/></Types>'),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="word/document.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
        'core-properties" Target="docProps/core.xml"/></Relationships>'),
    "word/_rels/document.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'styles" Target="styles.xml"/></Relationships>'),
    "word/styles.xml": (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:styles xmlns:w="{_W}">'
        '<w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/></w:style>'
        '<w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/><w:basedOn w:val="Normal"/>'
        '<w:pPr><w:outlineLvl w:val="0"/></w:pPr></w:style></w:styles>'),
    "docProps/core.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><cp:coreProperties '
        'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Alice, Repeated</dc:title>'
        '<dc:creator>Lewis Carroll</dc:creator><dc:language>en-GB</dc:language></cp:coreProperties>'),
}


def make_docx(path: Path, mb: float) -> Path:
    """Alice's chapters, repeated to ``mb`` MB of text, as a Word document (written as WordprocessingML here:
    python-docx takes over a minute to add this many paragraphs)."""
    import re
    import zipfile
    from xml.sax.saxutils import escape

    text = (CORPORA / "alice.txt").read_text(encoding="utf-8")
    chapters = re.split(r"\n(?=CHAPTER [IVXL]+\.)", text)[1:]
    body: list[str] = []
    size = 0
    round_ = 0
    while size < mb * 1_000_000:
        round_ += 1
        for chapter in chapters:
            head, _, rest = chapter.partition("\n")
            body.append(f'<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{escape(head.strip())} '
                        f"(part {round_})</w:t></w:r></w:p>")
            for para in re.split(r"\n\s*\n", rest):
                words = " ".join(para.split())
                if words:
                    body.append(f'<w:p><w:r><w:t xml:space="preserve">{escape(words)}</w:t></w:r></w:p>')
                    size += len(words.encode("utf-8"))
    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{_W}"><w:body>'
                + "".join(body) + "</w:body></w:document>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, xml in {**_DOCX_PARTS, "word/document.xml": document}.items():
            archive.writestr(name, xml)
    return path


def run_import(source: Path, out: Path) -> dict[str, float]:
    from pipeline.importer.folder import init_folder

    start = time.perf_counter()
    result = init_folder(source, out=out)
    seconds = time.perf_counter() - start
    files = [p for p in out.rglob("*") if p.is_file()]
    return {"seconds": seconds, "parts": len(result.rows), "chapters": sum(1 for r in result.rows if r.chapter),
            "files": len(files), "bytes_written": sum(p.stat().st_size for p in files)}


def run_baseline(source: Path, out: Path, files: int, total: int) -> dict[str, float]:
    """Read and decode the source, write ``files`` files of ``total`` bytes: the floor of any import."""
    import zipfile

    start = time.perf_counter()
    if source.suffix == ".txt":
        text = source.read_bytes().decode("utf-8")
    else:
        with zipfile.ZipFile(source) as archive:
            text = "".join(archive.read(n).decode("utf-8", errors="replace") for n in archive.namelist())
    out.mkdir(parents=True)
    piece = max(1, total // max(files, 1))
    data = text.encode("utf-8")
    for i in range(files):
        (out / f"{i:04d}.md").write_bytes(data[i * piece:(i + 1) * piece])
    return {"seconds": time.perf_counter() - start}


def child(kind: str, source: Path, out: Path, files: int, total: int) -> None:
    result = run_import(source, out) if kind == "import" else run_baseline(source, out, files, total)
    me = resource.getrusage(resource.RUSAGE_SELF)
    result["rss_mb"] = me.ru_maxrss / 1024
    result["cpu_s"] = me.ru_utime + me.ru_stime
    print(json.dumps(result))


def measure(kind: str, source: Path, out: Path, files: int = 0, total: int = 0) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(source), str(out), str(files), str(total)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{kind} of {source.name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=2.5, help="MB of text in each book (default 2.5)")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, source, out, files, total = args.child
        child(kind, Path(source), Path(out), int(files), int(total))
        return

    figures: dict[str, object] = {"mb": args.mb, "books": {}}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as temp:
        work = Path(temp)
        books = {}
        for name, make, file_name in (("plain text", make_plain, "hongloumeng.txt"),
                                      ("EPUB", make_epub, "salt-road.epub"), ("DOCX", make_docx, "alice.docx")):
            start = time.perf_counter()
            books[name] = make(work / file_name, args.mb)
            print(f"made the {name} book in {time.perf_counter() - start:.1f} s")
        print(f"\n{'book':12}{'file MB':>9}{'parts':>7}{'written MB':>12}{'import s':>10}{'peak MB':>9}"
              f"{'baseline s':>12}{'peak MB':>9}")
        for name, source in books.items():
            imported = measure("import", source, work / "out")
            base = measure("baseline", source, work / "floor", int(imported["files"]), int(imported["bytes_written"]))
            print(f"{name:12}{source.stat().st_size / 1e6:9.2f}{imported['parts']:7.0f}"
                  f"{imported['bytes_written'] / 1e6:12.2f}{imported['seconds']:10.2f}{imported['rss_mb']:9.0f}"
                  f"{base['seconds']:12.2f}{base['rss_mb']:9.0f}")
            figures["books"][name] = {  # type: ignore[index]
                "file_mb": source.stat().st_size / 1e6, "parts": imported["parts"],
                "written_mb": imported["bytes_written"] / 1e6, "import_s": imported["seconds"],
                "peak_rss_mb": imported["rss_mb"], "baseline_s": base["seconds"], "baseline_rss_mb": base["rss_mb"]}
    worst = max(figures["books"].values(), key=lambda b: b["import_s"])  # type: ignore[attr-defined]
    print(f"slowest import: {worst['import_s']:.2f} s (aim < {AIM_S:g} s); peak memory "
          f"{max(b['peak_rss_mb'] for b in figures['books'].values()):.0f} MB")  # type: ignore[attr-defined]
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    figures["load_average"] = os.getloadavg()[0]
    if args.json_out:
        args.json_out.write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
