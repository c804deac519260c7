"""Who is acting, and the error a person can fix: what every use case takes and raises."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agents.errors import AnalysisInputError


class Surface(StrEnum):
    """Where a request came from (a run row's `surface`)."""

    cli = "cli"
    shell = "shell"
    slack = "slack"
    apply = "apply"  # the apply job, re-checking an approval as the approver


class UserError(AnalysisInputError):
    """Something the person asking can fix; surfaces show `message` and `hint`."""


@dataclass(frozen=True)
class Actor:
    user: str
    surface: str  # a Surface
    team: str | None = None
