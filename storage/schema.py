"""Imports every model module, so ``Base.metadata`` knows every table (Alembic, tests)."""

from storage import accounts, alerts, anpr, audit, evidence, models  # noqa: F401
from storage import onvif as onvif_models  # noqa: F401 - camera_events
from storage.db import Base

metadata = Base.metadata
