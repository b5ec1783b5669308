"""The records poserun emits, as pydantic models derived from ``processors/records.py``.

The processor builds records as plain dicts on the hot path, typed by the ``TypedDict``s
of ``poserun.processors.records``, the one source of truth. The models here are made from
those (same keys, same types, no other key allowed; ``session`` and ``emitted_ns``, which the
service adds, required) to validate records in tests and in consumers, and to give the JSON
schema (:func:`json_schema`).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from poserun.processors import records as schema


def _is_typed_dict(t: Any) -> bool:
    return isinstance(t, type) and hasattr(t, "__required_keys__")


def _convert(hint: Any) -> Any:
    """A hint with any nested ``TypedDict`` made a model (pydantic reads ``typing.TypedDict``
    only from Python 3.12)."""
    if _is_typed_dict(hint):
        return _model(hint, hint.__name__)
    args = typing.get_args(hint)
    if args and isinstance(hint, types.UnionType):
        out = _convert(args[0])
        for a in args[1:]:
            out = out | _convert(a)
        return out
    return hint


#: Bounds pydantic checks besides the types (a ``TypedDict`` in processors/ cannot carry them).
CONSTRAINTS: dict[str, Any] = {"support_time_s": Field(gt=0)}


def _model(td: type, name: str, required: frozenset[str] = frozenset()) -> type[BaseModel]:
    """A model with the ``TypedDict``'s keys and types; ``required``: optional keys it requires."""
    hints = typing.get_type_hints(td)  # NotRequired stripped: the optional keys are below
    fields: dict[str, Any] = {}
    for key, raw in hints.items():
        hint = _convert(raw)
        if key in CONSTRAINTS:
            hint = Annotated[hint, CONSTRAINTS[key]]
        if key in td.__required_keys__ or key in required:  # type: ignore[attr-defined]
            fields[key] = (hint, ...)
        else:
            fields[key] = (hint | None, None)
    model = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    model.__doc__ = td.__doc__
    return model


# as the service emits them: with the session and the emission time
LandingRecord = _model(schema.LandingRecord, "LandingRecord", schema.SERVICE_KEYS)
StanceRecord = _model(schema.StanceRecord, "StanceRecord", schema.SERVICE_KEYS)
CoachRecord = _model(schema.CoachRecord, "CoachRecord", schema.SERVICE_KEYS)
Record = Annotated[LandingRecord | StanceRecord | CoachRecord,  # type: ignore[valid-type]
                   Field(discriminator="type")]


def json_schema() -> dict[str, Any]:
    """The JSON schema of a record (landing, stance or coach), for consumers of the sinks."""
    from pydantic import TypeAdapter

    return TypeAdapter(Record).json_schema()
