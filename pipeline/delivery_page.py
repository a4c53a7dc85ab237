"""The readable delivery report: ``delivery-report.json`` of `audiobook deliver` as a static page.

The verdict and every failed rule first, the retailer's policy on synthetic narration, one row per
file, the book's own rules (credits, sample, cover, QC), then per file every rule with its measured
value, its limit, the result and the rule's source. No script, no network: a CSP forbids both.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from pipeline.delivery import clock


def _clock(seconds: object) -> str:
    return clock(seconds) if isinstance(seconds, (int, float)) else "-"


def render_html(data: dict[str, Any]) -> str:
    """``delivery-report.json`` as a page a producer reads: the verdict, the retailer's policy note,
    the book's checks, then per file every rule with its measured value, limit, result and source."""
    e = html.escape

    def rows(checks: Sequence[dict[str, Any]]) -> str:
        out = []
        for c in checks:
            result = "pass" if c["passed"] else ("fail" if c["severity"] == "error" else c["severity"])
            fix = f"<br><small>fix: {e(c['fix'])}</small>" if c.get("fix") and not c["passed"] else ""
            out.append(f"<tr class='{result}'><td>{e(c['name'])}</td><td>{e(str(c['measured']))}</td>"
                       f"<td>{e(str(c['limit']))}</td><td>{result.upper()}{fix}</td><td><small>{e(c['source'])}"
                       "</small></td></tr>")
        return ("<table><thead><tr><th>rule</th><th>measured</th><th>limit</th><th>result</th><th>source</th></tr>"
                f"</thead><tbody>{''.join(out)}</tbody></table>")

    verdict = "PASSED" if data["passed"] else "FAILED"
    policy = data["policy"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>Delivery report: {e(data['retailer'])}</title><style>",
        "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em}",
        "table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;",
        "padding:.3em .5em;text-align:left;vertical-align:top}tr.fail td{background:#fde8e8}",
        "tr.warning td{background:#fff6d6}.verdict{font-weight:bold}.FAILED{color:#b00}.PASSED{color:#070}",
        "</style></head><body>",
        f"<h1>Delivery report: {e(data['retailer'])} (<code>{e(data['profile'])}</code>)</h1>",
        f"<p class='verdict {verdict}'>{verdict}: {len(data['files'])} file(s) in {e(data['folder'])}</p>",
    ]
    if data["failures"]:
        parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in data["failures"]) + "</ul>")
    summary = "".join(
        f"<tr class='{'pass' if f['passed'] else 'fail'}'><td>{e(f['file'])}</td><td>{e(f['role'])}</td>"
        f"<td>{_clock((f.get('measured') or {}).get('duration_s'))}</td>"
        f"<td>{'PASS' if f['passed'] else 'FAIL'}</td></tr>" for f in data["files"])
    parts.append("<table><thead><tr><th>file</th><th>what</th><th>length</th><th>result</th></tr></thead>"
                 f"<tbody>{summary}</tbody></table>")
    if policy["synthetic_narration"]:
        confirmed = (" Confirmed with --confirm-ai-narration-allowed." if policy["confirmed"] else "") \
            if policy["confirmation_required"] else ""
        parts.append(f"<h2>Synthetic narration</h2><p>{e(policy['synthetic_narration'])}{confirmed}<br>"
                     f"<small>{e(policy['source'])}</small></p>")
    for note in data["notes"]:
        parts.append(f"<p><em>{e(note)}</em></p>")
    if data["book_checks"]:
        parts.append("<h2>The book</h2>" + rows(data["book_checks"]))
    for f in data["files"]:
        length = (f.get("measured") or {}).get("duration_s")
        what = f"{f['role']}, track {f['track']}" if f.get("track") else f["role"]
        status = "PASS" if f["passed"] else "FAIL"
        parts.append(f"<h2>{e(f['file'])}</h2><p>{e(what)}, {_clock(length)}: <b>{status}</b>"
                     + (f"<br>error: {e(f['error'])}" if f.get("error") else "") + "</p>" + rows(f["checks"]))
    parts.append("</body></html>\n")
    return "\n".join(parts)

