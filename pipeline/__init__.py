"""soundclone-audiobook: turn a manuscript into a finished audiobook through the SoundClone API.

The data flows one way: manifest -> chunks -> tasks (submit, poll) -> downloads -> stitched chapters
-> book. The library entry points live in :mod:`pipeline.runner`; :mod:`pipeline.cli` is a thin
click layer over them.
"""

__version__ = "0.1.0"
