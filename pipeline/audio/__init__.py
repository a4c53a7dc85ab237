"""The audio adapter: the only code that runs ffmpeg, uses mutagen or pydub, or works on samples.

Split by the engine each module owns:

* :mod:`pipeline.audio.ffmpeg`  ffmpeg processes (decode, encode, mux) and pydub pointed at them
* :mod:`pipeline.audio.tags`    mutagen: tags, chapter marks, container facts
* :mod:`pipeline.audio.dsp`     numpy: speech bounds, fades, true peak, limiter, room tone, levels
"""
