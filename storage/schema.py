"""Imports every model module, so ``Base.metadata`` knows every table (Alembic, tests)."""

from storage import accounts, alerts, anpr, audit, models  # noqa: F401
from storage.db import Base

metadata = Base.metadata
