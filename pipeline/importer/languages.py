"""Language names and tags as books write them -> the API's language names (:data:`pipeline.models.LANGUAGE_CODES`).

EPUB metadata, DOCX core properties and HTML ``lang`` carry BCP 47 tags (``en-GB``, ``zh_CN``) or ISO 639-2
codes (``eng``); Project Gutenberg headers and Markdown front matter carry names ("English", "german";
"English, French"). :func:`api_language` reads them all; :func:`guess_language` recognises the few
languages a text's script or commonest words make certain, for a source that declares none.
"""

from __future__ import annotations

import re

from pipeline.models import LANGUAGE_AUTO, LANGUAGE_CODES

# Three-letter codes (ISO 639-2/B and /T) some EPUB 2 tools write, for the API's languages.
_ISO_639_2 = {"eng": "en", "chi": "zh", "zho": "zh", "cmn": "zh", "jpn": "ja", "kor": "ko", "ara": "ar",
              "rus": "ru", "spa": "es", "fre": "fr", "fra": "fr", "por": "pt", "ger": "de", "deu": "de",
              "tur": "tr", "dut": "nl", "nld": "nl", "ukr": "uk", "vie": "vi", "ind": "id", "ita": "it",
              "tha": "th", "pol": "pl", "rum": "ro", "ron": "ro", "gre": "el", "ell": "el", "cze": "cs",
              "ces": "cs", "fin": "fi", "hin": "hi", "bul": "bg", "dan": "da", "heb": "he", "may": "ms",
              "msa": "ms", "per": "fa", "fas": "fa", "slo": "sk", "slk": "sk", "swe": "sv", "hrv": "hr",
              "fil": "tl", "tgl": "tl", "hun": "hu", "nor": "nb", "nob": "nb", "nno": "nn", "slv": "sl",
              "cat": "ca", "tam": "ta", "afr": "af", "no": "nb", "iw": "he", "in": "id"}
_NAME_BY_CODE = {code: name for name, code in reversed(LANGUAGE_CODES.items())}
_BY_NAME = {name.casefold(): name for name in LANGUAGE_CODES}


def api_language(value: str | None) -> str:
    """A language as a book names it -> the API language name, or ``auto`` when it is missing or not one
    the API reads: a name ("English", "german"; the first of "English, French") or a tag (BCP 47
    ``en-GB``, ``zh_CN``, ISO 639-2 ``eng``). Cantonese (``yue``, ``zh-yue``) is ``Chinese,Yue``."""
    text = (value or "").strip()
    first = text if text.casefold() in _BY_NAME else re.split(r"[,;/]", text)[0].strip()
    if first.casefold() in _BY_NAME:
        return _BY_NAME[first.casefold()]
    parts = first.lower().replace("_", "-").split("-")
    if parts[0] == "yue" or parts[:2] == ["zh", "yue"]:
        return "Chinese,Yue"
    code = _ISO_639_2.get(parts[0], parts[0])
    return _NAME_BY_CODE.get(code, LANGUAGE_AUTO)


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z]")
_ENGLISH_WORDS = frozenset({"the", "and", "of", "to", "a", "in", "that", "it", "was", "he", "she", "i", "his",
                            "her", "you", "with", "for", "had", "as", "but"})


def guess_language(text: str) -> str | None:
    """A language the text's script or its commonest words make certain (Chinese, Japanese, Korean,
    English), or None."""
    sample = text[:40_000]
    han, kana, hangul = len(_HAN.findall(sample)), len(_KANA.findall(sample)), len(_HANGUL.findall(sample))
    latin = len(_LATIN.findall(sample))
    if hangul > max(han, latin):
        return "Korean"
    if han + kana > latin:
        return "Japanese" if kana > 0.1 * (han + kana) else "Chinese"
    words = re.findall(r"[a-z]+", sample.casefold())
    if len(words) >= 50 and sum(w in _ENGLISH_WORDS for w in words) / len(words) > 0.15:
        return "English"
    return None
