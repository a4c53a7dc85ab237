"""Review pages drawn from :mod:`pipeline.review.model`: one HTML page per chapter and an index.

Every page is static and self-contained, so it works opened from ``file://`` with no server and no
network: the CSS and JS are inlined from ``assets/`` (the same text on every page), the page's data
is inlined as JSON in ``<script type="application/json" id="review-data">``, and a Content Security
Policy forbids fetching anything but the audio the page links to. The text, the chunk headings, the
QC badges and the waveform (an SVG path drawn here from the peaks) are plain HTML, readable with JS
off; the script adds seeking, highlighting, the "flagged only" filter, take playback and the redo
marks (kept in the browser's ``localStorage`` under the book's key, shared by the book's pages).

A chapter page holds only its own chapter's data, so its size grows with the chapter, not the book.
Paths in the model are relative to the ``review/`` folder and are percent-encoded into links here.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from pipeline.review.model import BookReview, ChapterReview, ChunkView, QcCheck, SentenceView, TakeView

ASSETS_DIR = "review/assets"   # inside the ``pipeline`` package (package data)
DATA_ELEMENT_ID = "review-data"
MARKS_FILE = "review-marks.json"
VERDICTS = ("pass", "warn", "fail", "unchecked")
FLAGGED_VERDICTS = ("warn", "fail")
WAVE_HALF_HEIGHT = 100           # the waveform's y units: -100 (top) .. 100 (bottom), 0 the centre line
CHECK_MIN_WIDTH = 0.004          # a check with no end is drawn this fraction of the waveform wide

# The page fetches nothing but its own audio: no scripts, styles, fonts or images from anywhere,
# no requests from script (file: for pages opened from disk, 'self' for pages served by a server).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "media-src 'self' file: blob:; base-uri 'none'; form-action 'none'"
)


# --------------------------------------------------------------------------------------------------
# Public


def render_chapter(review: ChapterReview) -> str:
    """One self-contained HTML page for one chapter: its audio player (``review.audio``), the
    waveform with seams and flagged spans, every sentence grouped by chunk with its QC badges and
    takes, and the redo/note controls. Holds only this chapter's data."""
    sentences = sorted(review.sentences, key=lambda s: s.start_s)
    keys = {c.index: c.key for c in review.chunks}
    ids = _sentence_ids(keys, sentences)
    data = {
        "page": "chapter",
        "book": review.book,
        "book_key": review.book_key,
        "chapter_id": review.chapter_id,
        "number": review.number,
        "duration_s": review.duration_s,
        "marks_file": MARKS_FILE,
        "chunks": [{"index": c.index, "key": c.key, "start_s": c.start_s, "end_s": c.end_s,
                    "verdict": c.verdict} for c in review.chunks],
        "sentences": [{"id": ids[i], "chunk": s.chunk, "key": keys.get(s.chunk, ""),
                       "start_s": s.start_s, "end_s": s.end_s, "text": s.text}
                      for i, s in enumerate(sentences)],
    }
    counts = _verdict_counts(c.verdict for c in review.chunks)
    flagged = counts["warn"] + counts["fail"]
    nav = [f'<a href="{_href(review.index_page)}">Book index</a>']
    if review.previous_page:
        nav.append(f'<a href="{_href(review.previous_page)}" rel="prev">← previous chapter</a>')
    if review.next_page:
        nav.append(f'<a href="{_href(review.next_page)}" rel="next">next chapter →</a>')
    body = [
        '<header class="page-head">',
        f'<nav class="nav">{" · ".join(nav)}</nav>',
        _rehearsal_banner(review.simulated),
        f'<p class="book">{_e(review.book)}</p>',
        f'<h1><span class="number">{review.number}.</span> {_e(review.title)}</h1>',
        f'<p class="meta">{format_clock(review.duration_s)} · {len(review.chunks)} chunks: '
        f'{_counts_text(counts)} · {len(sentences)} sentences</p>',
        "</header>",
        '<div class="player-bar" id="player-bar">',
        f'<audio id="player" controls preload="metadata" src="{_href(review.audio)}">'
        f'<a href="{_href(review.audio)}">the chapter audio</a></audio>',
        _waveform_svg(review),
        '<div class="toolbar js-only">',
        '<label><input type="checkbox" id="flagged-only" autocomplete="off"> flagged only '
        f'<span class="muted">({flagged} of {len(review.chunks)} chunks)</span></label>',
        '<span class="spacer"></span>',
        '<span id="mark-count" class="muted" aria-live="polite"></span>',
        '<button type="button" id="export-marks">Export marks</button>',
        '<button type="button" id="clear-marks">Clear marks</button>',
        "</div>",
        '<p id="storage-warning" class="warning" hidden>This browser does not keep marks for pages opened '
        "from disk: export them before you close the page.</p>",
        "</div>",
        '<main id="text">',
    ]
    if flagged == 0:
        body.append('<p class="no-flagged">No chunk of this chapter is flagged.</p>')
    body.extend(_chunk_sections(review.chunks, sentences))
    body.append("</main>")
    title = f"{review.number}. {review.title} · {review.book} (review)"
    return _page(title, "\n".join(body), data)


def render_index(review: BookReview) -> str:
    """The book's index page: each chapter with its duration, QC counts per verdict and a link to
    its page (or its note when it has none), the totals, the delivery check (profile, passed or
    failed, the failing lines), and the marks' export and clear buttons."""
    data = {
        "page": "index",
        "book": review.book,
        "book_key": review.book_key,
        "marks_file": MARKS_FILE,
        "chapters": [{"chapter_id": c.chapter_id, "number": c.number, "page": c.page} for c in review.chapters],
    }
    rows = []
    totals = dict.fromkeys(VERDICTS, 0)
    total_s = 0.0
    for chapter in review.chapters:
        counts = {v: chapter.verdicts.get(v, 0) for v in VERDICTS}
        for v in VERDICTS:
            totals[v] += counts[v]
        total_s += chapter.duration_s or 0.0
        if chapter.page:
            name = f'<a href="{_href(chapter.page)}">{_e(chapter.title)}</a>'
        else:
            name = f'{_e(chapter.title)}<div class="note">{_e(chapter.note or "no page yet")}</div>'
        if chapter.note and chapter.page:
            name += f'<div class="note">{_e(chapter.note)}</div>'
        duration = format_clock(chapter.duration_s) if chapter.duration_s is not None else "—"
        cells = "".join(f'<td class="num v-{v}{" zero" if not counts[v] else ""}">{counts[v]}</td>' for v in VERDICTS)
        rows.append(f'<tr data-chapter="{_e(chapter.chapter_id)}"><td class="num">{chapter.number}</td>'
                    f'<td class="title">{name}</td><td class="num">{duration}</td>{cells}'
                    '<td class="num marks js-only"></td></tr>')
    heads = "".join(f'<th class="num" scope="col">{v}</th>' for v in VERDICTS)
    total_cells = "".join(f'<td class="num">{totals[v]}</td>' for v in VERDICTS)
    author = f'<p class="meta">by {_e(review.author)}</p>' if review.author else ""
    body = "\n".join([
        '<header class="page-head">',
        _rehearsal_banner(review.simulated),
        f"<h1>{_e(review.book)}</h1>",
        author,
        "</header>",
        "<main>",
        '<section class="chapters"><h2>Chapters</h2>',
        '<table class="chapters"><thead><tr><th class="num" scope="col">#</th><th scope="col">Chapter</th>'
        f'<th class="num" scope="col">Duration</th>{heads}<th class="num js-only" scope="col">Marked</th></tr></thead>',
        f'<tbody>{"".join(rows)}</tbody>',
        f'<tfoot><tr><td></td><th scope="row">Total</th><td class="num">{format_clock(total_s)}</td>{total_cells}'
        '<td class="num js-only" id="marks-total"></td></tr></tfoot></table>',
        '<div class="toolbar js-only"><span class="spacer"></span>'
        '<span id="mark-count" class="muted" aria-live="polite"></span>'
        '<button type="button" id="export-marks">Export marks</button>'
        '<button type="button" id="clear-marks">Clear marks</button></div>',
        '<p id="storage-warning" class="warning" hidden>This browser does not keep marks for pages opened '
        "from disk.</p>",
        "</section>",
        _delivery_section(review),
        "</main>",
    ])
    return _page(f"{review.book} (review)", body, data)


def format_clock(seconds: float) -> str:
    """``m:ss`` under an hour, else ``h:mm:ss`` (whole seconds, rounded down: a position shown is
    never later than the audio it names)."""
    total = max(0, math.floor(seconds + 1e-6)) if math.isfinite(seconds) else 0
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# --------------------------------------------------------------------------------------------------
# The page frame


def _page(title: str, body: str, data: dict[str, Any]) -> str:
    return "\n".join([
        "<!doctype html>",
        '<html class="no-js">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{_e(title)}</title>",
        f"<style>\n{_asset('review.css')}</style>",
        "</head>",
        "<body>",
        body,
        f'<script type="application/json" id="{DATA_ELEMENT_ID}">{_json_for_script(data)}</script>',
        f"<script>\n{_asset('review.js')}</script>",
        "</body>",
        "</html>",
        "",
    ])


def _json_for_script(data: object) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment in it: every ``<``, ``>`` and
    ``&`` is written as a ``\\u`` escape (they only occur inside JSON strings, where the escape means
    the same character), so neither ``</script>`` nor ``<!--`` can appear in the page's source."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _asset(name: str) -> str:
    return files("pipeline").joinpath(f"{ASSETS_DIR}/{name}").read_text(encoding="utf-8")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(path: str) -> str:
    """A relative file path as an escaped URL reference (spaces, ``#``, ``?`` and ``%`` encoded)."""
    return _e(quote(path.replace("\\", "/"), safe="/"))


def _rehearsal_banner(simulated: bool) -> str:
    return '<p class="rehearsal" role="note">rehearsal: simulated voice</p>' if simulated else ""


# --------------------------------------------------------------------------------------------------
# Chapter page parts


def _sentence_ids(keys: dict[int, str], sentences: list[SentenceView]) -> list[str]:
    """A sentence's mark id: its chunk's key and its place in the chunk, so a mark stays on its
    sentence when other chunks change and goes stale (unmatched) when its own chunk does."""
    seen: dict[int, int] = {}
    ids = []
    for s in sentences:
        ordinal = seen.get(s.chunk, 0)
        seen[s.chunk] = ordinal + 1
        ids.append(f"{keys.get(s.chunk) or f'chunk-{s.chunk}'}/{ordinal}")
    return ids


def _verdict_counts(verdicts: Iterable[str | None]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for verdict in verdicts:
        counts[verdict if verdict in counts else "unchecked"] += 1
    return counts


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f'<span class="count v-{v}">{counts[v]} {v}</span>' for v in VERDICTS if counts[v]) or "none"


def _verdict_label(verdict: str | None) -> str:
    return verdict if verdict in ("pass", "warn", "fail") else "unchecked"


def _chunk_sections(chunks: tuple[ChunkView, ...], sentences: list[SentenceView]) -> list[str]:
    members: dict[int, list[tuple[int, SentenceView]]] = {c.index: [] for c in chunks}
    orphans = []
    for i, s in enumerate(sentences):
        members[s.chunk].append((i, s)) if s.chunk in members else orphans.append((i, s))
    parts = [_chunk_section(chunk, members[chunk.index]) for chunk in chunks]
    if orphans:  # the subtitles name a chunk the journal does not: show the text all the same
        rows = "".join(_sentence_row(i, s, markable=False) for i, s in orphans)  # no chunk key to mark
        parts.append('<section class="chunk" data-verdict=""><header class="chunk-head"><h2>Other sentences</h2>'
                     f'</header><div class="sentences">{rows}</div></section>')
    return parts


def _chunk_section(chunk: ChunkView, members: list[tuple[int, SentenceView]]) -> str:
    verdict = _verdict_label(chunk.verdict)
    span = f"{format_clock(chunk.start_s)}–{format_clock(chunk.end_s)}"
    head = [
        '<header class="chunk-head">',
        f'<h2><a class="seek" href="#chunk-{chunk.index}" data-start="{chunk.start_s:.3f}">Chunk {chunk.index}</a> '
        f'<span class="time">{span}</span></h2>',
        f'<span class="badge v-{verdict}">{verdict}</span>',
    ]
    if chunk.takes:
        takes = [_take_link(chunk, t) for t in chunk.takes]
        turn = ('<button type="button" class="in-turn js-only" '
                f'data-chunk="{chunk.index}">play in turn</button>') if len(chunk.takes) > 1 else ""
        head.append(f'<span class="takes">takes: {" ".join(takes)} {turn}</span>')
    head.append("</header>")
    problems = [c for c in chunk.checks if not c.passed]
    checks = (f'<ul class="checks">{"".join(_check_item(c) for c in problems)}</ul>') if problems else ""
    rows = "".join(_sentence_row(i, s) for i, s in members)
    return (f'<section class="chunk v-{verdict}" id="chunk-{chunk.index}" data-chunk="{chunk.index}" '
            f'data-verdict="{verdict}">{"".join(head)}{checks}<div class="sentences">{rows}</div></section>')


def _take_link(chunk: ChunkView, take: TakeView) -> str:
    verdict = f" · {take.verdict}" if take.verdict else ""
    selected = " · selected" if take.selected else ""
    cls = "take selected" if take.selected else "take"
    current = ' aria-current="true"' if take.selected else ""
    return (f'<a class="{cls} v-{_verdict_label(take.verdict)}" href="{_href(take.audio)}" data-chunk="{chunk.index}" '
            f'data-take="{take.take}"{current}>take {take.take}{verdict}{selected}</a>')


def _check_item(check: QcCheck) -> str:
    severity = "fail" if check.severity == "fail" else "warn"
    where = ""
    if check.at_s is not None:
        where = (f' <a class="seek time" href="#" data-start="{check.at_s:.3f}">at {format_clock(check.at_s)}'
                 + (f"–{format_clock(check.until_s)}" if check.until_s is not None else "") + "</a>")
    return (f'<li class="check v-{severity}"><span class="badge v-{severity}">{severity}</span> '
            f'<b class="check-name">{_e(check.name)}</b> <span class="detail">{_e(check.detail)}</span>{where}</li>')


def _sentence_row(i: int, sentence: SentenceView, *, markable: bool = True) -> str:
    """One sentence: its time, its text (click to play from it) and, when it belongs to a known chunk
    (a mark needs the chunk's key), its redo toggle and note field."""
    marks = ('<span class="marks js-only">'
             '<label><input type="checkbox" class="redo" autocomplete="off"> redo</label>'
             '<input type="text" class="note" autocomplete="off" placeholder="note" '
             f'aria-label="note on sentence {i + 1}"></span>') if markable else ""
    return (f'<div class="s" id="s-{i}" data-i="{i}">'
            f'<span class="t">{format_clock(sentence.start_s)}</span>'
            f'<span class="text" tabindex="0" data-start="{sentence.start_s:.3f}">{_e(sentence.text)}</span>'
            f"{marks}</div>")


# --------------------------------------------------------------------------------------------------
# The waveform


def _waveform_svg(review: ChapterReview) -> str:
    """The chapter's waveform as inline SVG: one x unit per peak bin (the viewBox is stretched to the
    page's width), the peaks mirrored about the centre line, each chunk that is flagged shaded over
    its span and each failed check over its own, seams (chunk starts) as thin lines, and a playhead
    the script moves. The SVG carries no namespace URL: inline SVG in HTML needs none."""
    bins = len(review.peaks)
    width = max(bins, 1)
    duration = review.duration_s if review.duration_s > 0 else 1.0

    def x(t: float) -> float:
        return min(max(t / duration, 0.0), 1.0) * width

    parts = []
    for chunk in review.chunks:
        verdict = _verdict_label(chunk.verdict)
        if verdict in FLAGGED_VERDICTS:
            parts.append(_span_rect(x(chunk.start_s), x(chunk.end_s), f"span v-{verdict}",
                                    f"chunk {chunk.index}: {verdict}", width))
        for check in chunk.checks:
            if not check.passed and check.at_s is not None:
                end = x(check.until_s) if check.until_s is not None else x(check.at_s) + width * CHECK_MIN_WIDTH
                severity = "fail" if check.severity == "fail" else "warn"
                parts.append(_span_rect(x(check.at_s), end, f"flag v-{severity}",
                                        f"chunk {chunk.index}: {check.name}: {check.detail}", width))
    parts.append(f'<path class="wave" d="{_wave_path(review.peaks)}"/>')
    for chunk in review.chunks:
        if chunk.start_s > 0:
            at = _num(x(chunk.start_s))
            parts.append(f'<line class="seam" x1="{at}" x2="{at}" y1="{-WAVE_HALF_HEIGHT}" y2="{WAVE_HALF_HEIGHT}"/>')
    parts.append(f'<line id="playhead" class="playhead" x1="0" x2="0" y1="{-WAVE_HALF_HEIGHT}" '
                 f'y2="{WAVE_HALF_HEIGHT}"/>')
    return (f'<svg id="waveform" class="waveform" viewBox="0 {-WAVE_HALF_HEIGHT} {width} {2 * WAVE_HALF_HEIGHT}" '
            'preserveAspectRatio="none" role="img" aria-label="waveform: click to play from there">'
            f'{"".join(parts)}</svg>')


def _wave_path(peaks: tuple[float, ...]) -> str:
    """The outline of the mirrored peaks: along the top left to right, back along the bottom. A
    silent bin keeps a hairline so the time line stays visible."""
    if not peaks:
        return "M0 -1H1V1H0Z"
    heights = [max(1, round(min(max(p, 0.0), 1.0) * WAVE_HALF_HEIGHT)) if math.isfinite(p) else 1 for p in peaks]
    top = [f"{i} {-h}" for i, h in enumerate(heights)] + [f"{len(heights)} {-heights[-1]}"]
    bottom = [f"{len(heights)} {heights[-1]}"] + [f"{i} {h}" for i, h in reversed(list(enumerate(heights)))]
    return "M" + " ".join(top) + " L" + " ".join(bottom) + "Z"


def _span_rect(x0: float, x1: float, cls: str, title: str, width: int) -> str:
    x1 = max(x1, x0 + width * CHECK_MIN_WIDTH / 2)
    return (f'<rect class="{cls}" x="{_num(x0)}" y="{-WAVE_HALF_HEIGHT}" width="{_num(x1 - x0)}" '
            f'height="{2 * WAVE_HALF_HEIGHT}"><title>{_e(title)}</title></rect>')


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------------
# Index page parts


def _delivery_section(review: BookReview) -> str:
    profile = _e(review.delivery_profile) if review.delivery_profile else "none chosen"
    if review.delivery_passed is None:
        status = '<span class="badge v-unchecked">not checked yet</span>'
    elif review.delivery_passed:
        status = '<span class="badge v-pass">passed</span>'
    else:
        status = '<span class="badge v-fail">failed</span>'
    failing = [line for line in review.delivery if not line.passed]
    parts = ['<section class="delivery"><h2>Delivery check</h2>',
             f'<p>profile: <b class="profile">{profile}</b> {status} '
             f'<span class="muted">({len(review.delivery)} checks, {len(failing)} failing)</span></p>']
    if failing:
        rows = "".join(f'<tr><td>{_e(line.file)}</td><td>{_e(line.rule)}</td><td>{_e(line.measured)}</td>'
                       f"<td>{_e(line.limit)}</td></tr>" for line in failing)
        parts.append('<table class="delivery-failures"><thead><tr><th scope="col">File</th>'
                     '<th scope="col">Rule</th><th scope="col">Measured</th><th scope="col">Limit</th></tr></thead>'
                     f"<tbody>{rows}</tbody></table>")
    parts.append("</section>")
    return "".join(parts)
