"""Every background loop of the product makes its failure visible, by construction: a walk over
the source finds each loop (a call of storage.loops.run_every or Every) and requires an
``on_error`` that shows the failure (a camera's state, a /healthz note, an alert), or a loop
made by controlroom.background.watched, or a reason written here why the log is enough.
A new loop that only logs fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("controlroom", "cameras", "anpr", "storage")
MAKERS = {"run_every", "Every"}
# Where loops are made for others (the helpers themselves).
HELPERS = {"storage/loops.py", "controlroom/background.py"}
# (file, the loop's name as written) -> why the log is enough.
LOG_ONLY = {
    ("controlroom/evidence/runner.py", "'evidence export loop'"):
        "a job's own failure is stored on the job (state failed, its error shown in the request); the loop "
        "itself only reads the queue, and a job whose runner stops beating is taken again as stale",
    ("controlroom/evidence/runner.py", "f'evidence export job {job_id}: heartbeat'"):
        "a job whose heartbeat stops is seen as stale by every runner and requeued: the job's state shows it",
    ("controlroom/redaction/runner.py", "f'redaction job {fence.job_id}: heartbeat'"):
        "a redaction is a job of the one queue (controlroom.jobs): a heartbeat that keeps failing lets the "
        "job's lease run out, another jobs node takes it again (attempt + 1, shown with its node on the "
        "SAR's redaction panel) and this attempt is fenced off; the queue's own loops are watched",
    ("anpr/live.py", "'ANPR: following the camera inventory'"):
        "only with start(follow=True), which the service does not use: controlroom.anpr_service runs that "
        "loop through controlroom.background.watched",
}


def _loops() -> list[tuple[str, str, set[str]]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in HELPERS:
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name not in MAKERS:
                    continue
                keywords = {k.arg for k in node.keywords if k.arg}
                label = next((ast.unparse(k.value) for k in node.keywords if k.arg == "name"), "?")
                found.append((rel, label, keywords))
    return found


def test_every_background_loop_shows_its_failures():
    loops = _loops()
    assert len(loops) >= 8, loops  # the walk finds the loops (recorders, reload, health, anchor, node, ...)
    silent = [(rel, label) for rel, label, keywords in loops
              if "on_error" not in keywords and (rel, label) not in LOG_ONLY]
    assert silent == [], f"loops that fail only in the log: {silent}"
    stale = set(LOG_ONLY) - {(rel, label) for rel, label, _ in loops}
    assert not stale, f"LOG_ONLY names loops that are gone: {stale}"


def test_the_service_loops_are_watched():
    """The service's own periodic work goes through watched (a /healthz note per component)."""
    text = {p: (ROOT / p).read_text() for p in ("controlroom/jobs.py", "controlroom/anpr_service.py",
                                                 "controlroom/lawful.py", "controlroom/camera_health.py",
                                                 "controlroom/api/onvif.py")}
    for path, source in text.items():
        assert "watched(" in source, path
