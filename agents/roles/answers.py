"""The JSON shapes the model must answer in. Their JSON schema is sent with each call."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SeverityName = Literal["critical", "high", "medium", "low", "info"]


class ModelFinding(BaseModel):
    file: str
    start_line: int = Field(ge=1)
    end_line: int = Field(ge=1)
    severity: SeverityName
    category: str = Field(description="A short kebab-case kind, e.g. error-handling, injection.")
    title: str
    detail: str
    suggestion: str
    confidence: float = Field(ge=0, le=1)


class ModelPatch(BaseModel):
    file: str
    title: str
    unified_diff: str = Field(description="A unified diff of this one file against the head.")


class ReviewAnswer(BaseModel):
    findings: list[ModelFinding]
    patches: list[ModelPatch]


class TestFile(BaseModel):
    __test__ = False  # not a pytest class, despite the name

    path: str
    covers: list[str]
    content: str


class TestsAnswer(BaseModel):
    __test__ = False

    findings: list[ModelFinding]
    test_files: list[TestFile]


class RiskAnswer(BaseModel):
    summary: str
    findings: list[ModelFinding]


class Verdict(BaseModel):
    id: str
    supported: bool
    reason: str


class ValidationAnswer(BaseModel):
    verdicts: list[Verdict]


class FlagExplanation(BaseModel):
    flag: str = Field(description="The flag key, exactly as a finding names it.")
    rollout_risk: str = Field(description="What could go wrong when it rolls out, and the check.")


class FlagsAnswer(BaseModel):
    summary: str
    flags: list[FlagExplanation]
