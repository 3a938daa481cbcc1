"""Classify one finished step of ``gpu_acceptance.sh`` and write its ``NN-name.step.json``.

The shell script only runs commands; this decides what their exit code and
output mean (passed / failed / skipped, with a one-line reason), so the rules
live in one testable place. Exit 77 from a step means "skipped", its reason
the last line the command wrote to stderr (the automake convention).

    gpu_acceptance_step.py DIR ID TITLE KIND RC SECONDS LIMIT LIMITED_BY -- CMD...
    gpu_acceptance_step.py DIR ID TITLE skip REASON -- CMD...

KIND says what the step's stdout (``DIR/ID.out``) must hold: ``json`` (one
object), ``jsonl`` (one object per line, ending in ``run_finished``), ``junit``
(pytest's ``DIR/ID.xml``), ``version`` (``mfutop X.Y.Z``), ``screen`` (a tmux
capture of the app), ``text`` (anything).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SKIP_RC = 77
TIMEOUT_RCS = (124, 137)
REASON_CHARS = 300


def last_line(path: Path) -> str:
    """The last non-blank line of a file (a command's one-line error), capped."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:REASON_CHARS] if lines else ""


def junit_counts(path: Path) -> dict[str, int] | None:
    """tests / failures / errors / skipped from pytest's JUnit XML; None when unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def check_output(kind: str, out: Path, xml: Path) -> tuple[str, str]:
    """(status, reason) of a step whose command exited 0, from what it wrote."""
    try:
        text = out.read_text(errors="replace")
    except OSError:
        text = ""
    if kind == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return "failed", f"stdout is not JSON ({exc.msg} at line {exc.lineno})"
        return ("passed", "") if isinstance(value, dict) else ("failed", "stdout is JSON but not an object")
    if kind == "jsonl":
        events = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    return "failed", f"stdout line {number} is not JSON"
        if not any(isinstance(e, dict) and e.get("event") == "run_finished" for e in events):
            return "failed", f"no run_finished event among {len(events)} lines"
        return "passed", ""
    if kind == "junit":
        counts = junit_counts(xml)
        if counts is None:
            return "failed", "pytest wrote no readable JUnit XML"
        if counts["tests"] and counts["skipped"] == counts["tests"]:
            return "skipped", f"all {counts['tests']} tests skipped (no CUDA GPU)"
        if counts["tests"] == 0:
            return "failed", "pytest collected no gpu test"
        return "passed", ""
    if kind == "version":
        first = text.strip().splitlines()[0] if text.strip() else ""
        return ("passed", "") if first.startswith("mfutop ") else ("failed", f"unexpected output {first[:80]!r}")
    if kind == "screen":
        return ("passed", "") if "Predicted vs measured" in text else ("failed", "the captured screen has no comparison table")
    return "passed", ""


def classify(kind: str, rc: int, limit: int, limited_by: str, out: Path, err: Path, xml: Path) -> tuple[str, str]:
    if rc in TIMEOUT_RCS:
        why = "the time budget left" if limited_by == "budget" else "its time limit"
        return "failed", f"timed out after {limit} s ({why})"
    if rc == SKIP_RC:
        return "skipped", last_line(err) or "skipped by the step"
    if rc != 0:
        if kind == "junit":
            counts = junit_counts(xml)
            if counts is not None and (counts["failures"] or counts["errors"]):
                return "failed", f"{counts['failures']} failed, {counts['errors']} errors of {counts['tests']} gpu tests"
        return "failed", f"exit {rc}: {last_line(err) or last_line(out) or 'no message'}"
    return check_output(kind, out, xml)


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: gpu_acceptance_step.py DIR ID TITLE KIND ... -- CMD...", file=sys.stderr)
        return 2
    split = argv.index("--")
    head, command = argv[:split], argv[split + 1:]
    folder, step_id, title, kind = Path(head[0]), head[1], head[2], head[3]
    record = {"id": step_id, "name": step_id.split("-", 1)[-1], "title": title, "kind": kind, "command": command}
    if kind == "skip":
        record.update(status="skipped", reason=head[4], rc=None, seconds=0.0, limit_s=None)
    else:
        rc, seconds, limit, limited_by = int(head[4]), float(head[5]), int(head[6]), head[7]
        status, reason = classify(kind, rc, limit, limited_by, folder / f"{step_id}.out",
                                  folder / f"{step_id}.log", folder / f"{step_id}.xml")
        record.update(status=status, reason=reason, rc=rc, seconds=round(seconds, 3), limit_s=limit,
                      limited_by=limited_by)
    (folder / f"{step_id}.step.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"[{record['status']:>7}] {step_id}{': ' + record['reason'] if record['reason'] else ''}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
