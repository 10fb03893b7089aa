"""JSON shapes of requests, jobs, the register and custody (API, CLI and manifest share them)."""

from __future__ import annotations

from typing import Any

from controlroom.timefmt import local_iso, us_to_iso
from storage.evidence import DisclosureEntry, EvidenceRequest, ExportJob


def request_fields(req: EvidenceRequest) -> dict[str, Any]:
    """What the officer asked for and what was decided: the manifest's ``request``."""
    return {
        "id": req.id, "exhibit_reference": req.exhibit_ref,
        "officer_name": req.officer_name, "collar_number": req.collar_number, "force": req.force,
        "crime_reference": req.crime_reference, "offence": req.offence, "necessity": req.necessity,
        "lawful_basis": req.lawful_basis, "authorised_by": req.authorised_by,
        "requested_by": req.requested_by,
        "submitted_utc": us_to_iso(req.created_us), "submitted_local": local_iso(req.created_us),
        "decided_by": req.decided_by, "decided_utc": us_to_iso(req.decided_us),
        "decision_reason": req.decision_reason,
        "windows": [
            {"camera": w.camera_id, "from": us_to_iso(w.start_us), "to": us_to_iso(w.end_us),
             "from_local": local_iso(w.start_us), "to_local": local_iso(w.end_us)}
            for w in req.windows
        ],
    }


def job_json(job: ExportJob | None) -> dict[str, Any] | None:
    if job is None:
        return None
    percent = 100.0 if job.state == "done" else (
        round(100.0 * job.done_bytes / job.total_bytes, 1) if job.total_bytes else 0.0)
    return {
        "id": job.id, "state": job.state, "stage": job.stage, "attempts": job.attempts,
        "done_bytes": job.done_bytes, "total_bytes": job.total_bytes, "percent": min(percent, 100.0),
        "created_by": job.created_by, "created_utc": us_to_iso(job.created_us),
        "started_utc": us_to_iso(job.started_us), "finished_utc": us_to_iso(job.finished_us),
        "cancel_requested": job.cancel_requested, "error": job.error,
    }


def request_json(req: EvidenceRequest, job: ExportJob | None = None) -> dict[str, Any]:
    data = request_fields(req)
    data.update({
        "state": req.state, "hold_id": req.hold_id,
        "directed_surveillance": req.directed_surveillance, "ripa_reference": req.ripa_reference,
        "closed_by": req.closed_by, "closed_utc": us_to_iso(req.closed_us), "close_reason": req.close_reason,
        "review_utc": us_to_iso(req.review_us),
        "findings": req.findings or {},
        "package": {"bytes": req.package_bytes, "manifest_sha256": req.manifest_sha256}
        if req.package_path else None,
        "export": job_json(job),
    })
    return data


def register_json(e: DisclosureEntry) -> dict[str, Any]:
    return {
        "id": e.id, "at_utc": us_to_iso(e.at_us), "at_local": local_iso(e.at_us), "request_id": e.request_id,
        "released_by": e.released_by, "to": e.recipient, "why": e.purpose, "lawful_basis": e.lawful_basis,
        "what": e.what,
    }
