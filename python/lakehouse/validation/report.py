"""Validation outcomes: :class:`ValidationError` (a failure) and :class:`Report` (a pass).

``ValidationError`` travels as the Rust serde *externally tagged* enum the reference fixed
its wire on (contract section 13.2), one variant per category::

    {"Schema":{"field":"x","reason":"y"}}
    {"Completeness":{"reason":"y"}}
    {"Consistency":{"reason":"y"}}
    {"Policy":{"reason":"y"}}

:meth:`ValidationError.to_json` gives those bytes exactly: compact, keys in that order, and
non-ASCII text (the em dash and the multiplication sign of the reference's reasons) as
UTF-8, never ``\\u`` escapes. :meth:`ValidationError.from_wire` also reads the Go runtime's
legacy flat form ``{"Kind":"schema","Field":"x","Reason":"y"}``.

A ``Report`` is ``{"validator", "findings": [{"severity", "field", "message"}],
"elapsed_ms"}``; severities are ``"Warning"`` and ``"Info"`` (Rust enum spelling, like the
error variants). Findings never fail a validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = ["CATEGORIES", "Finding", "Report", "ValidationError", "rust_debug"]

#: the ValidationError variants, in the reference's order
CATEGORIES = ("Schema", "Completeness", "Consistency", "Policy")
Category = Literal["Schema", "Completeness", "Consistency", "Policy"]


def rust_debug(text: str) -> str:
    """``text`` quoted as Rust's ``{:?}`` prints a string (the reference's reasons use it)."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    out.append('"')
    return "".join(out)


class ValidationError(Exception):
    """A failed validation: a category, a reason and (for ``Schema``) the field at fault."""

    def __init__(self, category: Category, reason: str, field: str | None = None) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown ValidationError category {category!r}")
        if category == "Schema" and field is None:
            raise ValueError("a Schema error names its field")
        super().__init__(reason)
        self.category = category
        self.reason = reason
        self.field = field if category == "Schema" else None

    @classmethod
    def schema(cls, field: str, reason: str) -> ValidationError:
        return cls("Schema", reason, field)

    @classmethod
    def completeness(cls, reason: str) -> ValidationError:
        return cls("Completeness", reason)

    @classmethod
    def consistency(cls, reason: str) -> ValidationError:
        return cls("Consistency", reason)

    @classmethod
    def policy(cls, reason: str) -> ValidationError:
        return cls("Policy", reason)

    def to_wire(self) -> dict[str, dict[str, str]]:
        if self.category == "Schema":
            return {"Schema": {"field": self.field or "", "reason": self.reason}}
        return {self.category: {"reason": self.reason}}

    def to_json(self) -> bytes:
        """The wire bytes (the 422 body of ``/validate``)."""
        return orjson.dumps(self.to_wire())

    @classmethod
    def from_wire(cls, obj: Any) -> ValidationError:
        """Read the externally tagged form, or the legacy flat ``{Kind, Field, Reason}``.

        ValueError for anything else (an unknown variant included).
        """
        if not isinstance(obj, dict):
            raise ValueError("a ValidationError is a JSON object")
        if "Kind" in obj or "kind" in obj:
            kind = str(obj.get("Kind", obj.get("kind", ""))).capitalize()
            reason = obj.get("Reason", obj.get("reason", ""))
            fld = obj.get("Field", obj.get("field"))
            if kind not in CATEGORIES or not isinstance(reason, str):
                raise ValueError(f"unknown ValidationError kind {kind!r}")
            if kind == "Schema" and not isinstance(fld, str):
                raise ValueError("a Schema ValidationError needs a string Field")
            return cls(kind, reason, fld if kind == "Schema" else None)  # type: ignore[arg-type]
        if len(obj) != 1:
            raise ValueError("an externally tagged ValidationError has exactly one key")
        ((kind, inner),) = obj.items()
        if kind not in CATEGORIES or not isinstance(inner, dict):
            raise ValueError(f"unknown ValidationError variant {kind!r}")
        reason = inner.get("reason")
        if not isinstance(reason, str):
            raise ValueError(f"{kind}: reason must be a string")
        if kind == "Schema":
            fld = inner.get("field")
            if not isinstance(fld, str):
                raise ValueError("Schema: field must be a string")
            return cls("Schema", reason, fld)
        return cls(kind, reason)

    def __str__(self) -> str:
        where = f" on {self.field}" if self.field else ""
        return f"{self.category} error{where}: {self.reason}"

    def __repr__(self) -> str:
        return f"ValidationError({self.to_json().decode()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidationError) and self.to_wire() == other.to_wire()

    def __hash__(self) -> int:
        return hash(self.to_json())


@dataclass(frozen=True)
class Finding:
    severity: Literal["Warning", "Info"]
    message: str
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "field": self.field, "message": self.message}


@dataclass
class Report:
    """A passed validation and what it noticed on the way."""

    validator: str
    findings: list[Finding] = field(default_factory=list)
    elapsed_ms: int = 0

    def warn(self, message: str, field: str | None = None) -> None:
        self.findings.append(Finding("Warning", message, field))

    def info(self, message: str, field: str | None = None) -> None:
        self.findings.append(Finding("Info", message, field))

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "Warning"]

    def to_json(self) -> dict[str, Any]:
        return {
            "validator": self.validator,
            "findings": [f.to_json() for f in self.findings],
            "elapsed_ms": self.elapsed_ms,
        }
