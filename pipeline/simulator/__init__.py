"""A SoundClone-compatible API server for tests, demos and benchmarks (issue 3).

It implements the endpoints of ``shared/soundclone-api.md`` over real sockets, with the documented
envelope and field rules, lazily simulated task lifecycles, MP3 audio (32 kHz mono) with subtitles that
match it, links on a second origin that expire, rate limits, seeded faults and a billing ledger. It
imports nothing from the rest of ``pipeline``.

Python API::

    from pipeline.simulator import Simulator, SimulatorConfig, FaultProfile

    config = SimulatorConfig(api_key="sk-sim", task_base_s=0.05, preload_voices=("model_123",))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as sim:
        sim.base_url            # API origin, e.g. "http://127.0.0.1:40123"
        sim.files_url           # files origin (audio, subtitles, uploads)
        sim.register_voice("model_x", activated=False, created_at=None)
        sim.advance_clock(3600.0)
        sim.set_faults(FaultProfile.parse("seed=7,429=0.1,truncate=0.05"))
        sim.ledger()

Endpoints (API origin; bearer key required):
    ``POST /api/open-api/v1/soundCloning/clones``  preview task
    ``POST /api/open-api/v1/soundCloning/audios``  audio task
    ``GET  /api/open-api/v1/audios/{id}``          query either kind of task
    ``POST /api/open-api/v1/files/upload``         multipart field ``file`` -> ``{url, filename, size, mime_type}``

Admin endpoints (API origin, no auth, not counted in the ledger, never faulted; success envelope):
    ``GET  /admin/ledger``   the ledger (below)
    ``POST /admin/voices``   ``{"modelId": str, "createdAt"?: unix s, "activated"?: bool}`` register a voice
    ``POST /admin/clock``    ``{"advance_s": N}`` move the simulator clock forward; returns ``{"now"}``
    ``POST /admin/faults``   ``{"spec": "seed=7,429=0.1"}`` replace the fault profile (see ``FaultProfile``)
    ``GET  /admin/faults``   the profile in force; ``GET /admin/health`` liveness

Error statuses (envelope ``{"code": status * 100, "msg": "<field>: <rule>", "data": null}``):
    400 validation (``msg`` starts with the field name: ``speed: must be from 0.5 to 2 ...``), unknown or
    expired modelId, malformed JSON; 401 missing/invalid bearer key; 402 insufficient balance; 403 link
    expired or forged (files origin); 404 unknown task or path; 405 wrong method; 413 upload too big;
    429 rate limits and injected 429 (with ``Retry-After`` seconds); 500/502/503 injected faults.

Ledger keys (``Simulator.ledger()`` and ``GET /admin/ledger``):
    ``tasks_created`` {preview, audio, total}; ``billed_chars``, ``voice_fees`` (one per audio task),
    ``refunded_chars``, ``refunded_voice_fees``, ``net_billed_chars``, ``net_voice_fees``; ``refunds``
    [{task_id, kind, chars, voice_fee}] (failed tasks); ``duplicates`` [{model_id, content_text, options,
    task_ids, times_billed, extra_chars, extra_voice_fees}] (audio tasks with the same modelId, text and
    options billed more than once and not refunded); ``balance`` {initial, remaining, voice_fee_credits};
    ``requests`` {"POST /api/open-api/v1/soundCloning/audios": n, "GET /api/open-api/v1/audios/{id}": n,
    ...}; ``responses`` {endpoint: {status or "dropped": n}}; ``files_origin`` {requests,
    requests_with_authorization, authorization_seen, responses}; ``task_faults`` {fail, dead_link,
    no_link, status_alias, status_unknown, drop_sentence, long_silence, cut_short, clip: [task ids]} (the
    tasks each task fault hit); ``tasks`` [{id, kind, status (true: queued/processing/completed/failed),
    reported_status (what a query shows), model_id, billed_chars, voice_fee, created, take, content_text
    (the text as sent), faults,
    defects}]; ``voices`` [...]; ``now``; ``faults`` (spec in force). A task's ``defects`` says what its
    silent defect faults did to its audio, keyed by fault in the order applied: ``drop_sentence``
    {sentence_index, text, text_begin, text_end, at_s, removed_s}, ``long_silence`` {at_s, duration_s,
    boundary ("sentence" or "word"), text_offset}, ``cut_short`` {at_s, cues_end_s}, ``clip`` {gain_db,
    clipped_samples}; positions are seconds of the delivered audio (see :mod:`pipeline.simulator.defects`).

Takes: resubmitting the same create body renders a slightly different take (pitch, pace, pauses) each
time a previous task of that body completed; the first take is the audio this simulator always made.
A task's ``take`` in the ledger says which one it is (see :mod:`pipeline.simulator.voice`).

Determinism: task ids, model ids and fault decisions derive from hashes of the seed and the request
(see :mod:`pipeline.simulator.faults`), so the same seed and the same requests give the same results.
"""

from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.faults import FaultProfile
from pipeline.simulator.server import Simulator

__all__ = ["FaultProfile", "Simulator", "SimulatorConfig"]
