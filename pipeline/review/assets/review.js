/* Review pages: the interaction on top of the static HTML (which reads fine without this script).
 *
 * Data comes from <script type="application/json" id="review-data">; nothing here builds HTML from
 * text: text goes into the page through textContent only. Marks (redo + note per sentence) live in
 * localStorage under "soundclone-review:" + book_key, shared by every page of the book:
 *   {"version": 1, "book": TITLE, "chapters": {"ch:" + ID: {"chapter_id", "number",
 *      "marks": {SENTENCE_ID: {"chunk", "key", "sentence", "note", "redo", "pos"}}}}}
 * and exported as review-marks.json:
 *   {"book": TITLE, "marks": [{"chapter", "chunk", "key", "sentence", "note"}]} (redo marks only).
 */
(function () {
  "use strict";

  const root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  const data = JSON.parse(document.getElementById("review-data").textContent);
  const STORE_KEY = "soundclone-review:" + data.book_key;
  const STORE_VERSION = 1;
  const MARKS_FILE = data.marks_file || "review-marks.json";

  // ------------------------------------------------------------------------------------------------
  // The marks store

  let memoryStore = null; // used when localStorage refuses (some browsers, for file: pages)

  function emptyStore() {
    return { version: STORE_VERSION, book: data.book, chapters: {} };
  }

  function loadStore() {
    let raw;
    try {
      raw = window.localStorage.getItem(STORE_KEY);
    } catch (err) {
      raw = memoryStore;
    }
    if (raw === null || raw === undefined) raw = memoryStore;
    let store = null;
    try {
      store = raw ? JSON.parse(raw) : null;
    } catch (err) {
      store = null;
    }
    if (!store || typeof store !== "object" || !store.chapters || typeof store.chapters !== "object") {
      return emptyStore();
    }
    return store;
  }

  function saveStore(store) {
    store.version = STORE_VERSION;
    store.book = data.book;
    const raw = JSON.stringify(store);
    memoryStore = raw;
    try {
      window.localStorage.setItem(STORE_KEY, raw);
    } catch (err) {
      const warning = document.getElementById("storage-warning");
      if (warning) warning.hidden = false;
    }
  }

  function clearStore() {
    memoryStore = null;
    try {
      window.localStorage.removeItem(STORE_KEY);
    } catch (err) {
      /* nothing stored there */
    }
  }

  const own = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);
  const chapterSlot = (id) => "ch:" + id; // a prefix, so no chapter id can be "__proto__"

  function chapterRecords(store) {
    return Object.keys(store.chapters)
      .map((k) => store.chapters[k])
      .filter((c) => c && typeof c === "object" && c.marks && typeof c.marks === "object");
  }

  function redoMarks(record) {
    return Object.keys(record.marks)
      .map((k) => record.marks[k])
      .filter((m) => m && typeof m === "object" && m.redo === true);
  }

  function exportDocument(store) {
    const chapters = chapterRecords(store).sort(
      (a, b) => (Number(a.number) || 0) - (Number(b.number) || 0) ||
        String(a.chapter_id).localeCompare(String(b.chapter_id))
    );
    const marks = [];
    for (const record of chapters) {
      const list = redoMarks(record).sort((a, b) => (Number(a.pos) || 0) - (Number(b.pos) || 0));
      for (const m of list) {
        marks.push({
          chapter: String(record.chapter_id),
          chunk: Number(m.chunk),
          key: String(m.key),
          sentence: String(m.sentence),
          note: typeof m.note === "string" ? m.note : "",
        });
      }
    }
    return { book: data.book, marks: marks };
  }

  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function countMarks(store) {
    let book = 0;
    const perChapter = {};
    for (const record of chapterRecords(store)) {
      const n = redoMarks(record).length;
      perChapter[String(record.chapter_id)] = n;
      book += n;
    }
    return { book: book, perChapter: perChapter };
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  let refresh = function () {}; // redraws the page's marks from the store; set per page below
  const markCount = document.getElementById("mark-count");
  const exportButton = document.getElementById("export-marks");
  const clearButton = document.getElementById("clear-marks");

  if (exportButton) {
    exportButton.addEventListener("click", () => {
      const doc = exportDocument(loadStore());
      download(MARKS_FILE, JSON.stringify(doc, null, 2) + "\n");
      if (markCount) markCount.textContent = "exported " + plural(doc.marks.length, "mark") + " to " + MARKS_FILE;
    });
  }
  if (clearButton) {
    clearButton.addEventListener("click", () => {
      const store = loadStore();
      const n = countMarks(store).book;
      if (!chapterRecords(store).some((r) => Object.keys(r.marks).length > 0)) {
        if (markCount) markCount.textContent = "no marks to clear";
        return;
      }
      if (!window.confirm("Clear the marks and notes of every chapter of this book (" + plural(n, "redo mark") +
        ")? Export them first if you need them.")) return;
      clearStore();
      refresh();
    });
  }
  window.addEventListener("storage", (event) => {
    if (event.key === STORE_KEY || event.key === null) refresh();
  });

  // ------------------------------------------------------------------------------------------------
  // The index page: how many marks each chapter has

  if (data.page === "index") {
    refresh = function () {
      const counts = countMarks(loadStore());
      for (const row of document.querySelectorAll("tr[data-chapter]")) {
        const cell = row.querySelector("td.marks");
        const n = counts.perChapter[row.getAttribute("data-chapter")] || 0;
        if (cell) cell.textContent = n ? String(n) : "";
      }
      const total = document.getElementById("marks-total");
      if (total) total.textContent = String(counts.book);
      if (markCount) markCount.textContent = plural(counts.book, "sentence") + " marked for redo";
    };
    refresh();
    return;
  }

  // ------------------------------------------------------------------------------------------------
  // The chapter page

  const sentences = data.sentences; // sorted by start_s
  const rows = sentences.map((_, i) => document.getElementById("s-" + i));
  const player = document.getElementById("player");
  const takePlayer = new Audio();
  takePlayer.preload = "none";
  const bar = document.getElementById("player-bar");
  const wave = document.getElementById("waveform");
  const playhead = document.getElementById("playhead");
  const flaggedOnly = document.getElementById("flagged-only");
  const reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function play(media) {
    const promise = media.play();
    if (promise && promise.catch) promise.catch(() => {});
  }

  function seek(seconds) {
    takePlayer.pause();
    player.currentTime = Math.max(0, seconds);
    play(player);
  }

  // Marks on this page
  function chapterRecord(store, create) {
    const slot = chapterSlot(data.chapter_id);
    if (!own(store.chapters, slot)) {
      if (!create) return null;
      store.chapters[slot] = { chapter_id: data.chapter_id, number: data.number, marks: {} };
    }
    return store.chapters[slot];
  }

  function saveMark(i) {
    const row = rows[i];
    if (!row.querySelector("input.redo")) return; // a sentence outside any known chunk: nothing to retake
    const redo = row.querySelector("input.redo").checked;
    const note = row.querySelector("input.note").value;
    const s = sentences[i];
    const store = loadStore();
    const record = chapterRecord(store, true);
    record.chapter_id = data.chapter_id;
    record.number = data.number;
    if (redo || note) {
      record.marks[s.id] = { chunk: s.chunk, key: s.key, sentence: s.text, note: note, redo: redo, pos: i };
    } else {
      delete record.marks[s.id];
    }
    if (!Object.keys(record.marks).length) delete store.chapters[chapterSlot(data.chapter_id)];
    saveStore(store);
    row.classList.toggle("marked", redo);
    showCount(store);
  }

  function showCount(store) {
    if (!markCount) return;
    const counts = countMarks(store);
    const here = counts.perChapter[String(data.chapter_id)] || 0;
    markCount.textContent = plural(here, "redo mark") + " here, " + counts.book + " in the book";
  }

  refresh = function () {
    const store = loadStore();
    const record = chapterRecord(store, false);
    rows.forEach((row, i) => {
      if (!row || !row.querySelector("input.redo")) return;
      const mark = record && own(record.marks, sentences[i].id) ? record.marks[sentences[i].id] : null;
      const redo = !!(mark && mark.redo === true);
      row.querySelector("input.redo").checked = redo;
      const note = row.querySelector("input.note");
      const text = mark && typeof mark.note === "string" ? mark.note : "";
      if (note.value !== text && document.activeElement !== note) note.value = text;
      row.classList.toggle("marked", redo);
    });
    showCount(store);
  };

  rows.forEach((row, i) => {
    if (!row) return;
    const redo = row.querySelector("input.redo");
    if (redo) {
      redo.addEventListener("change", () => saveMark(i));
      row.querySelector("input.note").addEventListener("input", () => saveMark(i));
    }
    const text = row.querySelector(".text");
    text.addEventListener("click", () => seek(sentences[i].start_s));
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        seek(sentences[i].start_s);
      }
    });
  });
  refresh();

  // Links that seek: chunk headings, check positions
  for (const link of document.querySelectorAll("a.seek[data-start]")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      seek(Number(link.getAttribute("data-start")));
    });
  }

  // The sentence being heard
  let current = -1;
  let userScrolledAt = -Infinity;
  for (const kind of ["wheel", "touchmove"]) {
    window.addEventListener(kind, () => { userScrolledAt = performance.now(); }, { passive: true });
  }

  function sentenceAt(seconds) {
    let lo = 0;
    let hi = sentences.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (sentences[mid].start_s <= seconds + 1e-3) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  function revealGently(row) {
    if (!row || row.offsetParent === null) return; // hidden by the filter
    if (performance.now() - userScrolledAt < 4000) return; // the reader is looking elsewhere
    const rect = row.getBoundingClientRect();
    const top = bar ? bar.getBoundingClientRect().bottom : 0;
    if (rect.top >= top && rect.bottom <= window.innerHeight) return;
    row.scrollIntoView({ block: "center", behavior: reduceMotion ? "auto" : "smooth" });
  }

  function showPosition() {
    const t = player.currentTime;
    if (playhead && wave) {
      const width = wave.viewBox.baseVal.width || 1;
      const x = data.duration_s > 0 ? Math.min(Math.max(t / data.duration_s, 0), 1) * width : 0;
      playhead.setAttribute("x1", String(x));
      playhead.setAttribute("x2", String(x));
    }
    const i = sentenceAt(t);
    if (i === current) return;
    if (current >= 0 && rows[current]) {
      rows[current].classList.remove("current");
      rows[current].removeAttribute("aria-current");
    }
    current = i;
    if (i >= 0 && rows[i]) {
      rows[i].classList.add("current");
      rows[i].setAttribute("aria-current", "true");
      revealGently(rows[i]);
    }
  }
  player.addEventListener("timeupdate", showPosition);
  player.addEventListener("seeked", showPosition);
  player.addEventListener("play", () => takePlayer.pause());

  if (wave) {
    wave.addEventListener("click", (event) => {
      const rect = wave.getBoundingClientRect();
      if (!rect.width) return;
      seek(Math.min(Math.max((event.clientX - rect.left) / rect.width, 0), 1) * data.duration_s);
    });
  }

  // The filter
  function applyFilter() {
    root.classList.toggle("flagged-only", !!(flaggedOnly && flaggedOnly.checked));
  }
  if (flaggedOnly) flaggedOnly.addEventListener("change", applyFilter);
  applyFilter();

  // Takes: one at a time in a player of their own; switching takes of one chunk while one plays
  // keeps the place, so A and B can be heard at the same words. "play in turn" plays them all.
  let activeTake = null;
  let queue = [];

  function markTakes() {
    for (const link of document.querySelectorAll("a.take")) {
      link.classList.toggle("playing", link === activeTake && !takePlayer.paused);
    }
  }

  function startTake(link, at) {
    player.pause();
    activeTake = link;
    takePlayer.src = link.getAttribute("href");
    takePlayer.currentTime = at;
    play(takePlayer);
    markTakes();
  }

  for (const link of document.querySelectorAll("a.take")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      queue = [];
      if (link === activeTake && !takePlayer.paused) {
        takePlayer.pause();
        return;
      }
      const sameChunk = activeTake && activeTake !== link && !takePlayer.paused &&
        activeTake.getAttribute("data-chunk") === link.getAttribute("data-chunk");
      startTake(link, sameChunk ? takePlayer.currentTime : 0);
    });
  }
  for (const button of document.querySelectorAll("button.in-turn")) {
    button.addEventListener("click", () => {
      const chunk = button.getAttribute("data-chunk");
      queue = Array.from(document.querySelectorAll("a.take")).filter((l) => l.getAttribute("data-chunk") === chunk);
      const first = queue.shift();
      if (first) startTake(first, 0);
    });
  }
  takePlayer.addEventListener("play", markTakes);
  takePlayer.addEventListener("pause", markTakes);
  takePlayer.addEventListener("ended", () => {
    const next = queue.shift();
    if (next) startTake(next, 0);
    else markTakes();
  });
  takePlayer.addEventListener("error", () => {
    queue = [];
    markTakes();
  });

  // Space plays and pauses, except where space types or presses something itself.
  document.addEventListener("keydown", (event) => {
    if (event.key !== " " || event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    const target = event.target;
    if (target instanceof Element && target.closest(
      "input, textarea, select, button, audio, video, [contenteditable]:not([contenteditable='false'])"
    )) return;
    event.preventDefault();
    if (!takePlayer.paused) takePlayer.pause();
    else if (player.paused) play(player);
    else player.pause();
  });
})();
