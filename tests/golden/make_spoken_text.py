"""Write tests/golden/spoken-text.json: the spoken text the hand-written reader gave (issue 13, item 11).

The golden file pins what ``pipeline.text.to_spoken_text`` returned before the CommonMark reader
replaced it (commit ``LEGACY_COMMIT``), so that ``tests/test_markdown_reader.py`` can check that a
source without any of the constructs the old reader got wrong is read byte for byte as before: the
spoken text feeds every chunk's content hash, and a changed hash is a chunk the user pays for again.

Inputs, each read as Markdown and as plain text with ``scene_break_s=2.0``: every ``.md``/``.txt``
under ``sample_texts/`` and ``tests/fixtures/``; ``tests/golden/markdown-typical.md`` (the Markdown a
user writes by hand, none of it defective) and ``tests/golden/markdown-blocks.md`` (150 seeded random
chapters of the same constructs, blank-line separated); and, from the shared corpora beside the
checkout (``../shared/corpora``), each whole file, each chapter, and seeded random slices of chapter
size (some cut mid-line). Repository sources keep their old output in full; corpus entries keep its
SHA-256 and length (the corpora are not part of the repository).

Where the current reader (``pipeline.text``) differs, the entry also records its SHA-256 and every
differing passage, old and new: the test checks that each is one of the documented changes.

The old reader is taken from git (``git show LEGACY_COMMIT:pipeline/text.py``), so this script can
be rerun at any time; regenerate only on purpose::

    python tests/golden/make_spoken_text.py
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

LEGACY_COMMIT = "df4739f"
REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO.parent / "shared" / "corpora"
GOLDEN = Path(__file__).resolve().parent / "spoken-text.json"
SCENE_BREAK_S = 2.0
SLICES_PER_CORPUS = 150
CHAPTER_HEADING = {  # where a chapter starts in each corpus
    "alice.txt": re.compile(r"^CHAPTER [IVXL]+\.$", re.MULTILINE),
    "hongloumeng.txt": re.compile(r"^第[一二三四五六七八九十百零〇]+回", re.MULTILINE),
}


def legacy_reader() -> types.ModuleType:
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{LEGACY_COMMIT}:pipeline/text.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("legacy_text")
    sys.modules[module.__name__] = module  # dataclasses look the module up by name
    exec(compile(source, f"{LEGACY_COMMIT}:pipeline/text.py", "exec"), module.__dict__)
    return module


def repo_sources() -> list[Path]:
    found = [*sorted((REPO / "sample_texts").rglob("*")), *sorted((REPO / "tests" / "fixtures").rglob("*")),
             *sorted((REPO / "tests" / "golden").glob("*.md"))]
    return [p for p in found if p.is_file() and p.suffix in (".md", ".txt")]


def corpus_spans(name: str, text: str, rng: random.Random) -> list[tuple[str, int, int]]:
    """(label, start, end) of the whole text, each chapter and seeded chapter-sized slices."""
    spans = [("whole", 0, len(text))]
    starts = [m.start() for m in CHAPTER_HEADING[name].finditer(text)]
    for i, start in enumerate(starts):
        spans.append((f"chapter {i + 1}", start, starts[i + 1] if i + 1 < len(starts) else len(text)))
    for i in range(SLICES_PER_CORPUS):
        size = rng.randint(500, 40_000)
        start = rng.randrange(0, max(1, len(text) - size))
        end = min(len(text), start + size)
        if i % 2:  # every other slice starts and ends on a line boundary, the others mid-line
            start = text.rfind("\n", 0, start) + 1
            end = text.find("\n", end) + 1 or len(text)
        spans.append((f"slice {i + 1}", start, end))
    return spans


def differences(old: str, new: str) -> list[dict[str, str]]:
    """The passages where ``new`` differs from ``old``, paragraph by paragraph, then character by
    character within a changed paragraph, each with up to 20 characters of shared context."""
    found: list[dict[str, str]] = []
    old_paragraphs, new_paragraphs = old.split("\n\n"), new.split("\n\n")
    blocks = difflib.SequenceMatcher(None, old_paragraphs, new_paragraphs, autojunk=False)
    for op, a1, a2, b1, b2 in blocks.get_opcodes():
        if op == "equal":
            continue
        a, b = "\n\n".join(old_paragraphs[a1:a2]), "\n\n".join(new_paragraphs[b1:b2])
        ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
        for k, (cop, i1, i2, j1, j2) in enumerate(ops):
            if cop == "equal":
                continue
            # shared context: the equal stretches either side, up to 20 characters of each
            before = a[max(ops[k - 1][1], i1 - 20):i1] if k else ""
            after = a[i2:min(ops[k + 1][2], i2 + 20)] if k + 1 < len(ops) else ""
            found.append({"old": before + a[i1:i2] + after, "new": before + b[j1:j2] + after})
    return found


def main() -> None:
    sys.path.insert(0, str(REPO))
    from pipeline import text as current

    legacy = legacy_reader()
    entries: list[dict[str, Any]] = []

    def add(entry_id: str, source: str, start: int | None, end: int | None, raw: str, *, keep_text: bool) -> None:
        for markdown in (True, False):
            spoken = legacy.to_spoken_text(raw, markdown=markdown, scene_break_s=SCENE_BREAK_S)
            entry: dict[str, Any] = {"id": f"{entry_id} ({'markdown' if markdown else 'plain'})", "source": source,
                                     "start": start, "end": end, "markdown": markdown,
                                     "sha256": hashlib.sha256(spoken.encode()).hexdigest(), "chars": len(spoken)}
            if keep_text:
                entry["text"] = spoken
            now = current.to_spoken_text(raw, markdown=markdown, scene_break_s=SCENE_BREAK_S)
            if now != spoken:
                entry["new_sha256"] = hashlib.sha256(now.encode()).hexdigest()
                entry["differences"] = differences(spoken, now)
            entries.append(entry)

    for path in repo_sources():
        rel = path.relative_to(REPO).as_posix()
        add(rel, rel, None, None, legacy.decode_source(path.read_bytes()), keep_text=True)
    rng = random.Random(13_11)
    for name in sorted(CHAPTER_HEADING):
        text = legacy.decode_source((CORPORA / name).read_bytes())
        for label, start, end in corpus_spans(name, text, rng):
            add(f"corpora/{name} {label}", f"corpora/{name}", start, end, text[start:end], keep_text=False)
    golden = {"reader": f"pipeline.text.to_spoken_text at commit {LEGACY_COMMIT}", "scene_break_s": SCENE_BREAK_S,
              "entries": entries}
    GOLDEN.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(entries)} entries to {GOLDEN}")


if __name__ == "__main__":
    main()
