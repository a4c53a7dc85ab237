"""Manuscript import (``audiobook init``): an EPUB, DOCX, Markdown, plain-text or HTML book -> a book folder.

    source file --reader--> SourceBook (metadata + every part in reading order, classified)
                --folder--> DIR/book.yaml, DIR/chapters/NN-<slug>.md, DIR/cover.jpg|png

One module owns each third-party reader: :mod:`pipeline.importer.epub` (zipfile + lxml, EPUB 2 and 3),
:mod:`pipeline.importer.html` (lxml), :mod:`pipeline.importer.docx` (mammoth),
:mod:`pipeline.importer.plain` (Markdown and plain text, Project Gutenberg files). Every reader returns a
:class:`~pipeline.importer.model.SourceBook`; :mod:`pipeline.importer.classify` says which parts are read
aloud and which are skipped (never dropped: a skipped part is written too, commented out in the manifest);
:mod:`pipeline.importer.folder` writes the folder and, with ``--update``, merges a revised manuscript into
an existing one without losing the user's edits.
"""
