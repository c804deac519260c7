"""The schema's newest revision, known without importing SQLAlchemy or Alembic.

Migration files are named `NNNN_what.py` with revision "NNNN"; a test keeps this equal to
Alembic's own head. The command line asks it to open the data folder's store without the
database layer's imports (half a second) when the schema is already current.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

HEAD = max(
    p.name.split("_", 1)[0]
    for p in Path(str(resources.files("bot.store").joinpath("migrations")))
    .joinpath("versions")
    .glob("[0-9]*_*.py")
)
