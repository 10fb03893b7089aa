"""Imports every model module, so ``Base.metadata`` knows every table (Alembic, tests)."""

from storage import (  # noqa: F401
    accounts,
    alerts,
    audit,
    duty,
    evidence,
    health,
    incidents,
    jobs,
    masks,
    models,
    nodes,
    redaction,
    reports,
    ripa,
    sar,
    views,
)
from storage import onvif as onvif_models  # noqa: F401 - camera_events
from storage.anpr import models as anpr_models  # noqa: F401 - anpr_reads, hotlists, entries, hits
from storage.db import Base

metadata = Base.metadata
