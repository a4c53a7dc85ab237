"""The review pages in a real browser: headless Chromium opens them from ``file://`` and clicks.

One browser serves the whole module. The pages are rendered from hand-built review data for a
book of two chapters (plus one not built yet); the chapter audio is a real MP3 made by ffmpeg, so
seeking works on a real media element. Skipped, with the reason, only when no Chromium or
chromedriver is installed; Selenium Manager never runs (the driver's path is given).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from pipeline.audio.ffmpeg import find_ffmpeg
from pipeline.review.model import (
    BookReview,
    ChapterReview,
    ChapterSummary,
    ChunkView,
    DeliveryLine,
    QcCheck,
    SentenceView,
    TakeView,
)
from pipeline.review.render import render_chapter, render_index

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("review page tests need headless Chromium and chromedriver on PATH "
                "(Debian: apt install chromium chromium-driver)", allow_module_level=True)

WAIT_S = 20  # generous: waits end as soon as the page is ready; CI runs the suite on every core
BOOK = 'The "Ferry" & <Co>'
BOOK_KEY = "book-3f2a"

# (chunk, start_s, text): tricky text on purpose: markup, quotes, entities, CJK, emoji
SENTENCES_1 = [
    (0, 0.0, "The ferry left at dawn."),
    (0, 2.4, 'She wrote "</script><script>alert(1)</script>" on the wall.'),
    (1, 5.0, "It's a <b>bold</b> & 'quoted' claim."),
    (1, 7.3, "<!-- not a comment --> 東京は雨でした。"),
    (2, 10.2, "Headphones on 🎧🦜 — really."),
    (2, 12.5, "Ampersands &amp; stay literal, as does ${window.x}."),
    (3, 15.1, "Back to <i>plain</i>."),
    (3, 18.0, "The end."),
]
KEYS_1 = ["k-intro-0", "k-intro-1", "k-intro-2", "k-intro-3"]
VERDICTS_1 = ["pass", "fail", "warn", "pass"]


@dataclass(frozen=True)
class Site:
    review_dir: Path
    downloads: Path
    chapter_1: str
    chapter_2: str
    index: str


def make_mp3(path: Path, duration_s: float, frequency_hz: int = 440) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency={frequency_hz}:duration={duration_s}", "-ac", "1", "-b:a", "64k", str(path)],
                   check=True)


def chapter_one() -> ChapterReview:
    chunks = []
    for i, key in enumerate(KEYS_1):
        checks: tuple[QcCheck, ...] = ()
        takes: tuple[TakeView, ...] = (TakeView(1, f"../cache/{key}-1.mp3", True, VERDICTS_1[i]),)
        if VERDICTS_1[i] == "fail":
            checks = (QcCheck("silence", 1.5, 1.0, False, "fail", "1.5 s of silence at 0:06 (limit 1.0 s)", 6.0, 7.5),
                      QcCheck("clipping", 0.0, 0.0, True, "fail", "no clipping"))
            takes = (TakeView(1, f"../cache/{key}-1.mp3", False, "fail"),
                     TakeView(2, f"../cache/{key}-2.mp3", True, "fail"))
        elif VERDICTS_1[i] == "warn":
            checks = (QcCheck("rate", 19.0, 17.0, False, "warn", "19.0 chars/s (limit 17.0) <fast> & \"loud\""),)
        chunks.append(ChunkView(i, key, i * 5.0, (i + 1) * 5.0, VERDICTS_1[i], checks, takes))
    starts = [s for _, s, _ in SENTENCES_1] + [20.0]
    sentences = tuple(SentenceView(c, s, starts[n + 1] - 0.2, t) for n, (c, s, t) in enumerate(SENTENCES_1))
    peaks = tuple(0.2 + 0.6 * ((i * 7) % 10) / 10 for i in range(400))
    return ChapterReview(book=BOOK, book_key=BOOK_KEY, chapter_id="intro", number=1, title="Intro <& friends>",
                         audio="../chapters/01-intro.mp3", duration_s=20.0, chunks=tuple(chunks),
                         sentences=sentences, peaks=peaks, page="01-intro.html", next_page="02-more.html",
                         simulated=True)


def chapter_two() -> ChapterReview:
    chunks = (ChunkView(0, "k-more-0", 0.0, 5.0, "pass"),)
    sentences = (SentenceView(0, 0.0, 2.0, "A second chapter."), SentenceView(0, 2.5, 4.8, "It is short."))
    return ChapterReview(book=BOOK, book_key=BOOK_KEY, chapter_id="more", number=2, title="More",
                         audio="../chapters/02-more.mp3", duration_s=5.0, chunks=chunks, sentences=sentences,
                         peaks=(0.5,) * 50, page="02-more.html", previous_page="01-intro.html")


def book() -> BookReview:
    chapters = (
        ChapterSummary("intro", 1, "Intro <& friends>", "01-intro.html", 20.0, {"pass": 2, "warn": 1, "fail": 1}),
        ChapterSummary("more", 2, "More", "02-more.html", 3725.4, {"pass": 1}),
        ChapterSummary("later", 3, "Later", None, None, {}, "not built yet: run `audiobook run`"),
    )
    delivery = (
        DeliveryLine("01-intro.mp3", "loudness", "-16.0 LUFS", "-23 to -18 LUFS", False),
        DeliveryLine("01-intro.mp3", "peak", "-3.5 dBFS", "at most -3 dBFS", True),
        DeliveryLine("02-more.mp3", "noise floor", "-55 dB", "at most -60 dB", False),
    )
    return BookReview(book=BOOK, book_key=BOOK_KEY, author="A. Writer", chapters=chapters,
                      delivery_profile="acx", delivery_passed=False, delivery=delivery, simulated=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("book")
    make_mp3(root / "chapters" / "01-intro.mp3", 20)
    make_mp3(root / "chapters" / "02-more.mp3", 5)
    for key in KEYS_1:
        make_mp3(root / "cache" / f"{key}-1.mp3", 1, 660)
    make_mp3(root / "cache" / f"{KEYS_1[1]}-2.mp3", 1, 880)
    review_dir = root / "review"
    review_dir.mkdir()
    (review_dir / "01-intro.html").write_text(render_chapter(chapter_one()), encoding="utf-8")
    (review_dir / "02-more.html").write_text(render_chapter(chapter_two()), encoding="utf-8")
    (review_dir / "index.html").write_text(render_index(book()), encoding="utf-8")
    return Site(review_dir, tmp_path_factory.mktemp("downloads"), (review_dir / "01-intro.html").as_uri(),
                (review_dir / "02-more.html").as_uri(), (review_dir / "index.html").as_uri())


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
                "--allow-file-access-from-files", "--mute-audio", "--window-size=1200,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    options.add_experimental_option("prefs", {"download.default_directory": str(site.downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: WebDriver, site: Site) -> Callable[[str], WebDriver]:
    """Open a page with no marks stored and the download folder empty."""
    for old in site.downloads.iterdir():
        old.unlink()

    def open_page(url: str) -> WebDriver:
        browser.get(url)
        browser.execute_script("localStorage.clear()")
        browser.refresh()
        return browser
    return open_page


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition, message=what)


def wait_for_metadata(driver: WebDriver) -> None:
    wait_for(driver, lambda d: d.execute_script("return document.getElementById('player').readyState") >= 1,
             "the chapter audio's metadata")


def sentence_rows(driver: WebDriver) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, ".s")


def wait_for_download(site: Site) -> Any:
    target = site.downloads / "review-marks.json"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if target.exists() and not list(site.downloads.glob("*.crdownload")):
            text = target.read_text(encoding="utf-8")
            if text.strip():
                return json.loads(text)
        time.sleep(0.05)
    raise AssertionError(f"no review-marks.json in {site.downloads}: {sorted(p.name for p in site.downloads.iterdir())}")


# --------------------------------------------------------------------------------------------------


def test_every_sentence_is_shown_exactly(page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.chapter_1)
    texts = driver.execute_script("return [...document.querySelectorAll('.s .text')].map(e => e.textContent)")
    assert texts == [t for _, _, t in SENTENCES_1]
    assert driver.execute_script("return document.scripts.length") == 2  # the text's <script> is only text
    assert "rehearsal: simulated voice" in driver.find_element(By.TAG_NAME, "body").text
    assert driver.find_element(By.ID, "player").get_attribute("src").endswith("/chapters/01-intro.mp3")
    headings = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".chunk-head h2")]
    assert headings == ["Chunk 0 0:00–0:05", "Chunk 1 0:05–0:10", "Chunk 2 0:10–0:15", "Chunk 3 0:15–0:20"]
    fail_chunk = driver.find_element(By.ID, "chunk-1")
    assert "silence" in fail_chunk.text and "1.5 s of silence at 0:06 (limit 1.0 s)" in fail_chunk.text
    assert "no clipping" not in fail_chunk.text  # passed checks are not listed
    assert '19.0 chars/s (limit 17.0) <fast> & "loud"' in driver.find_element(By.ID, "chunk-2").text


def test_clicking_a_sentence_seeks_and_highlights_it(page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.chapter_1)
    wait_for_metadata(driver)
    driver.execute_script("window.seeks = []; const p = document.getElementById('player');"
                          "p.addEventListener('seeking', () => window.seeks.push(p.currentTime));")
    for n in (5, 2):
        start = SENTENCES_1[n][1]
        driver.execute_script("window.seeks = []")
        sentence_rows(driver)[n].find_element(By.CSS_SELECTOR, ".text").click()
        seeks = wait_for(driver, lambda d: d.execute_script("return window.seeks.length && window.seeks"),
                         "a seek of the player")
        assert abs(seeks[0] - start) < 0.05
        now = driver.execute_script("return document.getElementById('player').currentTime")
        assert start - 0.05 <= now < start + 2
        wait_for(driver, lambda d: "current" in sentence_rows(d)[n].get_attribute("class"),  # noqa: B023
                 "the sentence highlighted")
        assert [r.get_attribute("id") for r in driver.find_elements(By.CSS_SELECTOR, ".s.current")] == [f"s-{n}"]
    driver.execute_script("document.getElementById('player').pause()")


def test_clicking_the_waveform_seeks(page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.chapter_1)
    wait_for_metadata(driver)
    wave = driver.find_element(By.ID, "waveform")
    width = wave.size["width"]
    ActionChains(driver).move_to_element_with_offset(wave, width // 4, 0).click().perform()  # 3/4 of the way
    now = driver.execute_script("const p = document.getElementById('player'); p.pause(); return p.currentTime")
    assert abs(now - 15.0) < 0.5
    seams = driver.find_elements(By.CSS_SELECTOR, "#waveform line.seam")
    assert len(seams) == 3
    assert len(driver.find_elements(By.CSS_SELECTOR, "#waveform rect.span")) == 2  # the warn and fail chunks
    assert len(driver.find_elements(By.CSS_SELECTOR, "#waveform rect.flag")) == 1  # the silence at 6.0-7.5 s


def test_flagged_only_shows_warn_and_fail_chunks(page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.chapter_1)
    driver.find_element(By.ID, "flagged-only").click()
    shown = [c.get_attribute("data-chunk") for c in driver.find_elements(By.CSS_SELECTOR, "section.chunk")
             if c.is_displayed()]
    assert shown == ["1", "2"]
    visible = [r.find_element(By.CSS_SELECTOR, ".text").text for r in sentence_rows(driver) if r.is_displayed()]
    assert visible == [t for c, _, t in SENTENCES_1 if c in (1, 2)]
    driver.find_element(By.ID, "flagged-only").click()
    assert all(r.is_displayed() for r in sentence_rows(driver))


def test_marks_are_exported_kept_over_a_reload_and_shared_by_the_book(
        page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.chapter_1)
    rows = sentence_rows(driver)
    note = "breath noise <here> & 'there' \"too\" 🎧"
    rows[2].find_element(By.CSS_SELECTOR, "input.redo").click()
    rows[4].find_element(By.CSS_SELECTOR, "input.redo").click()
    rows[4].find_element(By.CSS_SELECTOR, "input.note").send_keys(note)
    rows[6].find_element(By.CSS_SELECTOR, "input.note").send_keys("a note without redo is not exported")
    driver.find_element(By.ID, "export-marks").click()
    expected_1 = [
        {"chapter": "intro", "chunk": 1, "key": KEYS_1[1], "sentence": SENTENCES_1[2][2], "note": ""},
        {"chapter": "intro", "chunk": 2, "key": KEYS_1[2], "sentence": SENTENCES_1[4][2], "note": note},
    ]
    assert wait_for_download(site) == {"book": BOOK, "marks": expected_1}

    driver.refresh()
    rows = sentence_rows(driver)
    assert [r.find_element(By.CSS_SELECTOR, "input.redo").is_selected() for r in rows] == [
        False, False, True, False, True, False, False, False]
    assert rows[4].find_element(By.CSS_SELECTOR, "input.note").get_attribute("value") == note
    assert rows[6].find_element(By.CSS_SELECTOR, "input.note").get_attribute("value") == "a note without redo is not exported"

    # Another chapter's page shares the book's marks; the index exports them all, in chapter order.
    driver.get(site.chapter_2)
    sentence_rows(driver)[1].find_element(By.CSS_SELECTOR, "input.redo").click()
    assert "1 redo mark here, 3 in the book" in driver.find_element(By.ID, "mark-count").text
    driver.get(site.index)
    assert driver.find_element(By.ID, "marks-total").text == "3"
    (site.downloads / "review-marks.json").unlink()
    driver.find_element(By.ID, "export-marks").click()
    expected_2 = {"chapter": "more", "chunk": 0, "key": "k-more-0", "sentence": "It is short.", "note": ""}
    assert wait_for_download(site) == {"book": BOOK, "marks": [*expected_1, expected_2]}

    driver.find_element(By.ID, "clear-marks").click()
    wait_for(driver, lambda d: d.switch_to.alert, "the confirmation").accept()
    assert driver.find_element(By.ID, "marks-total").text == "0"
    assert driver.execute_script(f"return localStorage.getItem('soundclone-review:{BOOK_KEY}')") is None
    driver.get(site.chapter_1)
    assert not any(r.find_element(By.CSS_SELECTOR, "input.redo").is_selected() for r in sentence_rows(driver))


def test_space_toggles_play_outside_text_fields(page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.chapter_1)
    wait_for_metadata(driver)
    paused = "return document.getElementById('player').paused"
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.SPACE)
    wait_for(driver, lambda d: not d.execute_script(paused), "playing after space")
    body.send_keys(Keys.SPACE)
    wait_for(driver, lambda d: d.execute_script(paused), "paused after space")
    field = sentence_rows(driver)[0].find_element(By.CSS_SELECTOR, "input.note")
    field.send_keys("a b")
    assert field.get_attribute("value") == "a b"
    assert driver.execute_script(paused)
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 (nothing the text did raised a dialog)


def test_takes_play_in_a_player_of_their_own(page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.chapter_1)
    takes = driver.find_elements(By.CSS_SELECTOR, "#chunk-1 a.take")
    assert [t.text for t in takes] == ["take 1 · fail", "take 2 · fail · selected"]
    assert "selected" in takes[1].get_attribute("class")
    takes[1].click()
    wait_for(driver, lambda d: "playing" in takes[1].get_attribute("class"), "take 2 playing")
    assert driver.current_url == site.chapter_1  # played in the page, not followed
    takes[0].click()  # A/B: switch to take 1
    wait_for(driver, lambda d: "playing" in takes[0].get_attribute("class")
             and "playing" not in takes[1].get_attribute("class"), "take 1 playing instead")
    takes[0].click()
    wait_for(driver, lambda d: "playing" not in takes[0].get_attribute("class"), "take 1 paused")


def test_pages_make_no_network_request(page: Callable[[str], WebDriver], site: Site) -> None:
    for path in site.review_dir.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?i)\b(https?|wss?|ftp):|(src|href)\s*=\s*[\"']?//", text), path.name
    for url in (site.chapter_1, site.chapter_2, site.index):
        driver = page(url)
        if url != site.index:
            wait_for_metadata(driver)
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(name.startswith("file:") for name in resources), resources
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == [], errors  # no script error, nothing the page's Content Security Policy refused


def test_index_page_lists_chapters_counts_and_delivery(page: Callable[[str], WebDriver], site: Site) -> None:
    driver = page(site.index)
    rows = driver.find_elements(By.CSS_SELECTOR, "table.chapters tbody tr")
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    assert cells[0] == ["1", "Intro <& friends>", "0:20", "2", "1", "1", "0", ""]
    assert cells[1] == ["2", "More", "1:02:05", "1", "0", "0", "0", ""]
    assert cells[2][:3] == ["3", "Later\nnot built yet: run `audiobook run`", "—"]
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "table.chapters tbody a")]
    assert links == [site.chapter_1, site.chapter_2]
    total = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "table.chapters tfoot td")]
    assert total[1:6] == ["1:02:25", "3", "1", "1", "0"]
    delivery = driver.find_element(By.CSS_SELECTOR, "section.delivery")
    assert "profile: acx" in delivery.text and "FAILED" in delivery.text.upper()
    failing = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
               for tr in delivery.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert failing == [["01-intro.mp3", "loudness", "-16.0 LUFS", "-23 to -18 LUFS"],
                       ["02-more.mp3", "noise floor", "-55 dB", "at most -60 dB"]]
    assert "rehearsal: simulated voice" in driver.find_element(By.TAG_NAME, "body").text
    driver.find_element(By.LINK_TEXT, "Intro <& friends>").click()
    wait_for(driver, lambda d: d.current_url == site.chapter_1, "the chapter page")
    assert driver.find_element(By.LINK_TEXT, "next chapter →").get_attribute("href") == site.chapter_2
