"""Safe reading of a manuscript: the file itself, and the ZIP archives and XML documents it is made of
(EPUB, DOCX).

A manuscript comes from anyone, so everything is read as hostile (issue 13, item 8):

* :func:`regular_file` checks that a path is a regular file (not missing, not a folder, a pipe or a
  device, which would hang or never end), and :func:`file_bytes` reads one of at most a given size.
* :func:`open_zip` opens an archive with the standard library's :mod:`zipfile` and refuses, before
  anything is read, a file that is not a ZIP or is damaged or truncated, member names that could
  escape a folder (absolute, ``..``, a drive letter, a backslash path, a NUL byte), duplicate or
  encrypted members, and zip bombs: a total uncompressed size over :data:`MAX_TOTAL_BYTES` or a large
  member compressed more than :data:`MAX_RATIO` to one. :meth:`SafeZip.read` does not trust the sizes
  the archive declares: it reads in bounded chunks and stops at the limit.
* :func:`parse_xml` parses with lxml with entity substitution, DTD loading and network access off and
  refuses a document that declares entities (billion laughs, external entities / XXE) instead of
  parsing it.

Every failure is a :class:`~pipeline.errors.SourceFileError` naming the file (and the member) and what
is wrong; no ``zipfile``, ``zlib``, ``lxml`` or ``OSError`` escapes this module.
"""

from __future__ import annotations

import html.entities
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from lxml import etree

from pipeline.errors import SourceFileError

MAX_TOTAL_BYTES = 500_000_000  # uncompressed; a long illustrated book is tens of MB
MAX_MEMBERS = 20_000
MAX_RATIO = 100  # deflate reaches 5-20:1 on text; a bomb reaches 1000:1 and more
RATIO_MIN_BYTES = 5_000_000  # a small member may compress absurdly well (a run of spaces); only big ones count
READ_CHUNK_BYTES = 1 << 16

_DRIVE = re.compile(r"^[A-Za-z]:")


def _zip_error(path: Path, exc: BaseException) -> SourceFileError:
    return SourceFileError(path, f"is a damaged ZIP archive ({exc}); export or download the file again")


class SafeZip:
    """An open ZIP archive whose member names and declared sizes were checked by :func:`open_zip`.

    Use it as a context manager. ``names`` lists the members in archive order (folders excluded).
    """

    def __init__(self, path: Path, archive: zipfile.ZipFile, *, max_total_bytes: int) -> None:
        self.path = path
        self._archive = archive
        self._infos = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        self._budget = max_total_bytes  # bytes that may still be read, over all reads

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def size(self, name: str) -> int:
        """The uncompressed size ``name`` declares (0 for a member that is not there)."""
        info = self._infos.get(name)
        return info.file_size if info is not None else 0

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``.

        Reads in chunks of :data:`READ_CHUNK_BYTES` and refuses (``SourceFileError``) a member that
        inflates past what the archive declared for it or past the reading budget
        (:data:`MAX_TOTAL_BYTES` over all reads of this archive), whatever its header says; a missing
        member or damaged data is a ``SourceFileError`` too.
        """
        info = self._infos.get(name)
        if info is None:
            raise SourceFileError(self.path, f"has no member {name!r}")
        limit = min(info.file_size, self._budget)
        chunks: list[bytes] = []
        total = 0
        try:
            with self._archive.open(info) as member:
                while True:
                    chunk = member.read(READ_CHUNK_BYTES)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > limit:
                        raise SourceFileError(self.path, f"member {name!r} inflates past its declared size or "
                                              f"the {MAX_TOTAL_BYTES:,}-byte limit (a zip bomb?); refused")
                    chunks.append(chunk)
        except SourceFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError,
                OverflowError, struct.error, OSError) as exc:
            raise SourceFileError(self.path, f"member {name!r} cannot be read ({exc}); the archive is "
                                  "damaged or truncated") from exc
        self._budget -= total
        return b"".join(chunks)

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def regular_file(path: Path, what: str = "the manuscript file") -> os.stat_result:
    """``path``'s status, when it is a regular file; else ``SourceFileError`` saying what it is instead."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceFileError(path, "does not exist; check the path") from None
    except OSError as exc:
        raise SourceFileError(path, f"cannot be read ({exc.strerror or exc}); check the path and its "
                                    "permissions") from exc
    if stat.S_ISDIR(info.st_mode):
        raise SourceFileError(path, f"is a folder; give {what} itself")
    if not stat.S_ISREG(info.st_mode):
        raise SourceFileError(path, f"is not a regular file (a pipe or a device?); give {what}")
    return info


def file_bytes(path: Path, *, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` (:func:`regular_file`), refused when over ``limit`` bytes
    (``what`` names it in the messages: "an HTML book")."""
    info = regular_file(path, what)
    if info.st_size > limit:
        raise SourceFileError(path, f"is {info.st_size:,} bytes, over the {limit:,}-byte limit for {what}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceFileError(path, f"cannot be read ({exc.strerror or exc})") from exc


def open_zip(path: Path, *, max_total_bytes: int = MAX_TOTAL_BYTES) -> SafeZip:
    """Open the ZIP archive at ``path`` after checking it is safe to read (see the module docstring).

    Raises ``SourceFileError`` naming ``path`` for a missing or unreadable file, a file that is not a
    ZIP, a damaged or truncated one, an unsafe, duplicate or encrypted member, or a zip bomb.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
        archive = zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise SourceFileError(path, "does not exist; check the path") from exc
    except IsADirectoryError as exc:
        raise SourceFileError(path, "is a folder, not a file") from exc
    except OSError as exc:
        raise SourceFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, OverflowError,
            struct.error) as exc:  # (a crafted directory reaches each of these in zipfile)
        if head == b"PK\x03\x04":
            raise SourceFileError(path, "is a truncated or damaged ZIP archive (its table of contents is "
                                  "missing or unreadable); export or download the file again") from exc
        raise SourceFileError(path, f"is not a ZIP archive, as a {path.suffix or 'zipped'} file must be "
                              "(was it renamed from another format?)") from exc
    try:
        _check_members(path, archive, max_total_bytes=max_total_bytes)
    except BaseException:
        archive.close()
        raise
    return SafeZip(path, archive, max_total_bytes=max_total_bytes)


def _check_members(path: Path, archive: zipfile.ZipFile, *, max_total_bytes: int) -> None:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise SourceFileError(path, f"has {len(infos):,} members, more than the {MAX_MEMBERS:,} a book has; "
                              "refused")
    seen: set[str] = set()
    total = 0
    for info in infos:
        problem = unsafe_member_name(info.orig_filename)
        if problem:
            raise SourceFileError(path, f"has a member named {info.orig_filename!r}, which {problem}; "
                                  "refused (a crafted archive?)")
        if info.filename in seen:
            raise SourceFileError(path, f"has two members named {info.filename!r}; refused (a crafted "
                                  "archive?)")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise SourceFileError(path, f"member {info.filename!r} is encrypted; remove the password "
                                  "protection (DRM) and try again")
        total += info.file_size
        if total > max_total_bytes:
            raise SourceFileError(path, f"would unpack to more than {max_total_bytes:,} bytes (a zip bomb?); "
                                  "refused")
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise SourceFileError(path, f"member {info.filename!r} is compressed "
                                  f"{info.file_size // max(info.compress_size, 1):,} to 1 (a zip bomb?); refused")


def unsafe_member_name(name: str) -> str | None:
    """What makes the archive member name ``name`` unsafe to use as a path, or None when it is safe.

    Refused: a NUL byte, an absolute path (``/x``, ``\\x``), a drive letter (``C:``), a backslash
    (a Windows path that other tools would split differently) and any ``..`` part.
    """
    if "\x00" in name:
        return "contains a NUL byte"
    if name.startswith(("/", "\\")):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if "\\" in name:
        return "contains a backslash"
    if ".." in name.split("/"):
        return "climbs out of its folder with '..'"
    return None


# --- XML ------------------------------------------------------------------------------------------

_ENTITY_DECLARATION = [b"<!ENTITY", "<!ENTITY".encode("utf-16-le"), "<!ENTITY".encode("utf-16-be")]
_NAMED_REFERENCE = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_XML_PREDEFINED = {b"amp", b"lt", b"gt", b"quot", b"apos"}


def _numeric_reference(match: re.Match[bytes]) -> bytes:
    name = match.group(1)
    if name in _XML_PREDEFINED:
        return match.group(0)
    text = html.entities.html5.get(name.decode("ascii") + ";")
    if text is None:
        return match.group(0)
    return b"".join(b"&#%d;" % ord(char) for char in text)


def parse_xml(data: bytes, *, source: str | os.PathLike[str], member: str | None = None,
              html_entities: bool = False) -> etree._Element:
    """Parse the XML document ``data`` and return its root element.

    ``source`` is the file named in errors and ``member`` the archive member the data came from.
    Entities are never substituted, no DTD is loaded and nothing is fetched from the network; a
    document whose DOCTYPE declares entities is refused (``SourceFileError``), as is one that is not
    well-formed. With ``html_entities``, HTML's named character references (``&nbsp;``, ``&eacute;``,
    which XHTML files use without the DTD that defines them) are read as the characters they name.
    """
    where = f"{member} " if member else ""
    if any(marker in data for marker in _ENTITY_DECLARATION):
        raise SourceFileError(source, f"{where}declares XML entities (<!ENTITY>), which a book never needs "
                              "(entity expansion and external entities are attacks); refused")
    if html_entities:
        data = _NAMED_REFERENCE.sub(_numeric_reference, data)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             dtd_validation=False, attribute_defaults=False, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceFileError(source, f"{where}is not well-formed XML ({_first_line(exc)})") from exc
    except (etree.LxmlError, ValueError) as exc:
        raise SourceFileError(source, f"{where}cannot be parsed as XML ({_first_line(exc)})") from exc
    if root is None:
        raise SourceFileError(source, f"{where}is an empty XML document")
    # A second line of defence for encodings the byte scan above cannot see (UTF-32, EBCDIC).
    dtd: Any = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise SourceFileError(source, f"{where}declares XML entities (<!ENTITY>); refused")
    return root


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
