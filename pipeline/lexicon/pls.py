"""W3C Pronunciation Lexicon Specification (PLS 1.0) files: read the ones users bring (ElevenLabs, Azure,
Amazon Polly), write the lexicon as one.

https://www.w3.org/TR/pronunciation-lexicon/ ::

    <lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon"
             alphabet="ipa" xml:lang="en-US">
      <lexeme>
        <grapheme>W3C</grapheme>                       one or more: the written forms
        <alias>World Wide Web Consortium</alias>       text said instead: usable here
        <phoneme>ˈdʌbəl.juː θriː siː</phoneme>         a phonetic transcription: not usable here
      </lexeme>
    </lexicon>

The SoundClone API takes text only, so only an ``<alias>`` can become an entry (``term`` -> ``say``); a
lexeme that has only ``<phoneme>`` pronunciations, or no grapheme, or an empty alias, is reported as
:class:`PlsSkipped` with its line and the reason, never dropped silently.

The file is read as hostile, through :func:`pipeline.importer.archive.parse_xml` (no entity substitution,
no DTD loading, no network; entity declarations refused) and at most :data:`MAX_LEXICON_BYTES` long.
Every problem with the file is a :class:`~pipeline.errors.SourceFileError` naming it (and the line when
known) and the fix; no ``lxml`` or ``OSError`` escapes this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from pipeline.errors import SourceFileError
from pipeline.importer.archive import file_bytes, parse_xml, regular_file

PLS_NAMESPACE = "http://www.w3.org/2005/01/pronunciation-lexicon"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
MAX_LEXICON_BYTES = 16 * 1024 * 1024  # the largest published lexicons are a few MB
_WHAT = "the PLS lexicon file"
_REEXPORT = "fix the file, or export the lexicon again from the tool that made it"
# How the alphabets PLS tools name are shown in a reason (ElevenLabs: ipa, cmu-arpabet; Polly: ipa,
# x-sampa; Azure: ipa, sapi, ups).
_ALPHABET_LABELS = {"ipa": "IPA", "x-sampa": "X-SAMPA", "cmu-arpabet": "CMU Arpabet", "sapi": "SAPI",
                    "ups": "UPS"}


@dataclass(frozen=True)
class PlsAlias:
    """A lexeme that can become entries: one per grapheme, each said as ``alias``."""

    graphemes: tuple[str, ...]  # every <grapheme> of the <lexeme>, in order, whitespace collapsed
    alias: str                  # the text of its first <alias>, whitespace collapsed
    line: int                   # the lexeme's line in the file


@dataclass(frozen=True)
class PlsSkipped:
    """A lexeme that cannot become an entry, and why (the reason says what to do instead)."""

    graphemes: tuple[str, ...]
    reason: str
    line: int


@dataclass(frozen=True)
class PlsLexicon:
    """What a PLS file holds, in document order."""

    language: str | None  # xml:lang of <lexicon>
    alphabet: str | None  # alphabet of <lexicon> (the default of its <phoneme>s)
    aliases: tuple[PlsAlias, ...]
    skipped: tuple[PlsSkipped, ...]


def read_pls(path: Path) -> PlsLexicon:
    """Read the PLS 1.0 lexicon at ``path``.

    A ``<lexicon>`` in the PLS namespace is read, and so is a bare one (some tools forget the
    namespace). Each ``<lexeme>`` with an ``<alias>`` becomes a :class:`PlsAlias` (its first alias; its
    phonemes, if any, are not needed); each other lexeme a :class:`PlsSkipped` with the reason. Text is
    whitespace-collapsed; a grapheme repeated in one lexeme is kept once.

    Raises :class:`~pipeline.errors.SourceFileError` (the file, the line when known, the fix) for a file
    that is missing, not a regular file, over :data:`MAX_LEXICON_BYTES`, not well-formed XML, declaring
    or referring to entities, or not a PLS lexicon.
    """
    info = regular_file(path, _WHAT)
    if info.st_size > MAX_LEXICON_BYTES:
        raise SourceFileError(path, f"is {info.st_size:,} bytes, over the {MAX_LEXICON_BYTES:,}-byte limit "
                              "for a PLS lexicon; is it the right file? (split a lexicon that big into several)")
    data = file_bytes(path, limit=MAX_LEXICON_BYTES, what=_WHAT)
    try:
        root = parse_xml(data, source=path)
    except SourceFileError as exc:
        detail = str(exc).removeprefix(f"{path}: ")
        raise SourceFileError(path, f"cannot be read as a PLS lexicon: {detail}; {_REEXPORT}") from exc
    _check_root(path, root)
    _refuse_entity_references(path, root)
    alphabet = _attribute(root, "alphabet")
    aliases: list[PlsAlias] = []
    skipped: list[PlsSkipped] = []
    for lexeme in _children(root, "lexeme"):
        read = _read_lexeme(lexeme, default_alphabet=alphabet)
        if isinstance(read, PlsAlias):
            aliases.append(read)
        else:
            skipped.append(read)
    return PlsLexicon(language=_attribute(root, f"{{{XML_NAMESPACE}}}lang"), alphabet=alphabet,
                      aliases=tuple(aliases), skipped=tuple(skipped))


def write_pls(entries: Sequence[tuple[str, str]], *, language: str = "en-US") -> str:
    """The PLS 1.0 document of ``entries`` (``(term, say)`` pairs): one ``<lexeme>`` per term, with its
    ``<grapheme>`` and ``<alias>``, in the order given.

    The text starts with its XML declaration (UTF-8: write it to a file in that encoding); ``&``, ``<``
    and ``>`` are escaped and everything else (``Zoë``, ``北京``) is kept as it is. Whitespace runs in
    terms and respellings are written as one space, as :func:`read_pls` reads them, so reading the
    document back gives the same pairs.

    Raises ``ValueError`` (a programming error: the lexicon validates its entries) for an empty
    ``language``, term or respelling, or one holding a character XML cannot carry (a control character).
    """
    if not language.strip():
        raise ValueError("write_pls: the language is empty")
    # (lxml-stubs types nsmap keys as str; None is how lxml names the default namespace)
    root = etree.Element(f"{{{PLS_NAMESPACE}}}lexicon", nsmap={None: PLS_NAMESPACE})  # type: ignore[dict-item]
    root.set("version", "1.0")
    root.set("alphabet", "ipa")  # required by PLS; no <phoneme> is written, so it names nothing in use
    root.set(f"{{{XML_NAMESPACE}}}lang", language.strip())
    for term, say in entries:
        grapheme, alias = _collapsed(term), _collapsed(say)
        if not grapheme or not alias:
            raise ValueError(f"write_pls: an empty term or respelling in {(term, say)!r}")
        lexeme = etree.SubElement(root, f"{{{PLS_NAMESPACE}}}lexeme")
        etree.SubElement(lexeme, f"{{{PLS_NAMESPACE}}}grapheme").text = grapheme
        etree.SubElement(lexeme, f"{{{PLS_NAMESPACE}}}alias").text = alias
    body = etree.tostring(root, encoding="unicode", pretty_print=True)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}'


# --- reading --------------------------------------------------------------------------------------

def _check_root(path: Path, root: etree._Element) -> None:
    name = etree.QName(root)
    if name.localname == "lexicon" and name.namespace in (PLS_NAMESPACE, None):
        return
    where = f" in the namespace {name.namespace!r}" if name.namespace else ""
    raise SourceFileError(path, f"line {_line(root)}: is not a PLS lexicon: its root element is "
                          f"<{name.localname}>{where}, not <lexicon> in {PLS_NAMESPACE!r}; give a "
                          "pronunciation lexicon exported as PLS (.pls), as ElevenLabs, Azure and Polly write")


def _refuse_entity_references(path: Path, root: etree._Element) -> None:
    # parse_xml refuses entity declarations, but a reference to an entity of an external DTD (which is
    # never loaded) survives as an unexpanded node; read as text it would put "&name;" in a grapheme.
    for entity in root.iter(etree.Entity):
        raise SourceFileError(path, f"line {_line(entity)}: refers to the entity {entity.text}, which "
                              "is never expanded (entities are an attack vector); write the characters it "
                              "stands for instead")


def _read_lexeme(lexeme: etree._Element, *, default_alphabet: str | None) -> PlsAlias | PlsSkipped:
    line = _line(lexeme)
    graphemes = tuple(dict.fromkeys(text for g in _children(lexeme, "grapheme") if (text := _text(g))))
    aliases = _children(lexeme, "alias")
    phonemes = _children(lexeme, "phoneme")
    if not graphemes:
        return PlsSkipped(graphemes, "a <lexeme> with no <grapheme>: there is no word to replace; add the "
                                     "<grapheme> it is for", line)
    # A phoneme names its alphabet or inherits the lexicon's (PLS 4.6).
    alphabets = ", ".join(dict.fromkeys(_alphabet_label(_attribute(p, "alphabet") or default_alphabet)
                                        for p in phonemes))
    if aliases:
        alias = _text(aliases[0])
        if alias:
            return PlsAlias(graphemes, alias, line)
        also = f" (its <phoneme> entry, {alphabets}, cannot be used: this API takes text only)" if phonemes else ""
        return PlsSkipped(graphemes, f"its <alias> is empty{also}: there is nothing to say instead; write the "
                                     "respelling in the <alias>, or add one with `say`", line)
    if phonemes:
        return PlsSkipped(graphemes, f"a <phoneme> entry ({alphabets}): this API takes text only, so it "
                                     "cannot be used; add a respelling with `say`", line)
    return PlsSkipped(graphemes, "a <lexeme> with neither <alias> nor <phoneme>: there is nothing to say "
                                 "instead; add a respelling with `say`", line)


def _children(parent: etree._Element, localname: str) -> list[etree._Element]:
    """``parent``'s child elements called ``localname``, in the PLS namespace or none (comments, processing
    instructions and other vocabularies' elements are skipped)."""
    found = []
    for child in parent:
        if isinstance(child.tag, str):
            name = etree.QName(child)
            if name.localname == localname and name.namespace in (PLS_NAMESPACE, None):
                found.append(child)
    return found


def _text(element: etree._Element) -> str:
    return _collapsed("".join(str(text) for text in element.itertext()))


def _attribute(element: etree._Element, name: str) -> str | None:
    return _collapsed(element.get(name, "")) or None


def _line(node: etree._Element) -> int:
    """``node``'s line in the file (0 when lxml does not know it; lxml-stubs leaves ``sourceline`` untyped)."""
    line = getattr(node, "sourceline", None)
    return line if isinstance(line, int) else 0


def _alphabet_label(alphabet: str | None) -> str:
    if alphabet is None:
        return "no alphabet named"
    return _ALPHABET_LABELS.get(alphabet.lower(), alphabet)


def _collapsed(text: str) -> str:
    return " ".join(text.split())
