"""Outside strings stay data on every headless path: replay --json, and the pump behind remote and the app's child."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from profiler.event_pump import EventPump
from profiler.events import DeviceDetected, LogMessage, RunFinished
from tui.cli import app

HOSTILE = "[@click=app.screenshot('pwned.svg','/tmp')]CLICK ME[/] [link=https://x.invalid]x[/link] \x1b]52;c;cHduZWQ=\x07\x1b[2J\x9b31m"


def _hostile_lines() -> list[str]:
    device = DeviceDetected(device="cpu", name=HOSTILE, spec_key=None, memory_total_bytes=1, peak_flops=1e9,
                            peak_dtype="fp32", peak_source=HOSTILE, details={"model_name": HOSTILE})
    events = [device, LogMessage("warning", HOSTILE),
              RunFinished(summary={"config": {"model": HOSTILE}, "warnings": [HOSTILE], "measured": {}})]
    return [json.dumps(e.to_dict()) for e in events]


def _no_escapes(text: str) -> bool:
    return "\x1b" not in text and "\x9b" not in text and "\x07" not in text


def test_replay_json_prints_hostile_strings_as_inert_json(tmp_path):
    path = tmp_path / "evil.jsonl"
    path.write_text("\n".join(_hostile_lines()) + "\n")
    result = CliRunner().invoke(app, ["replay", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert _no_escapes(result.stdout) and _no_escapes(result.stderr)
    summary = json.loads(result.stdout)
    assert summary["config"]["model"].startswith("[@click=app.screenshot(")  # kept literally, as data
    assert summary["warnings"] == [summary["config"]["model"]]


def test_the_event_pump_sanitises_a_hostile_child_or_remote_stream():
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line, flush=True)\nprint('\\x1b[2J stray', file=sys.stderr)"
    proc = subprocess.Popen([sys.executable, "-c", script, *_hostile_lines()], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pump = EventPump(proc)
    items = []
    while True:
        item = pump.get(timeout=30)
        assert item is not None, "the pump went silent"
        items.append(item)
        if item[0] == "end":
            break
    events = [payload for kind, payload in items if kind == "event"]
    assert [type(e) for e in events] == [DeviceDetected, LogMessage, RunFinished]
    texts = [events[0].name, events[0].peak_source, events[1].text, events[2].summary["config"]["model"]]
    assert all(_no_escapes(t) and "CLICK ME" in t for t in texts)
    stderr = [payload for kind, payload in items if kind == "stderr"]
    assert len(stderr) == 1 and _no_escapes(stderr[0]) and stderr[0].strip() == "stray"
