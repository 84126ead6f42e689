"""Gymnasium spaces from typed models and JSON schemas, and values between space, model and wire.

* :mod:`~gym_openenv.spaces.model`: :class:`ModelSpec`, a model's fields as one space
  (declared with ``Annotated[T, <space>]`` on our servers, derived from ``/schema`` for any other);
* :mod:`~gym_openenv.spaces.json_schema`: :func:`schema_space`, any JSON schema as a
  space plus the codec between wire and space values;
* :mod:`~gym_openenv.spaces.overrides`: a user's space in place of a derived one, checked;
* :mod:`~gym_openenv.spaces.base`: spaces as JSON (``x-gym-space``), values to and from the wire.
"""

from gym_openenv.spaces.base import (
    DEFAULT_CHARSET,
    DEFAULT_TEXT_MAX_LENGTH,
    FLAT_IN_JSON,
    METADATA_IN_JSON,
    NOT_IN_SPACE,
    SHORTER_ACCEPTED,
    SPACE_KEY,
    FieldMarker,
    contains,
    describe,
    field_names,
    field_types,
    from_wire,
    metadata_json_fields,
    space_from_json,
    space_json_schema,
    space_to_json,
    text,
    text_contains,
    text_contains_all,
    to_plain,
)
from gym_openenv.spaces.json_schema import BoundedSequence, JSONText, SchemaSpace, default_value, schema_space
from gym_openenv.spaces.model import FieldSpec, ModelSpec
from gym_openenv.spaces.overrides import override_codec

__all__ = [
    "DEFAULT_CHARSET",
    "DEFAULT_TEXT_MAX_LENGTH",
    "FLAT_IN_JSON",
    "METADATA_IN_JSON",
    "NOT_IN_SPACE",
    "SHORTER_ACCEPTED",
    "SPACE_KEY",
    "BoundedSequence",
    "FieldMarker",
    "FieldSpec",
    "JSONText",
    "ModelSpec",
    "SchemaSpace",
    "contains",
    "default_value",
    "describe",
    "field_names",
    "field_types",
    "from_wire",
    "metadata_json_fields",
    "override_codec",
    "schema_space",
    "space_from_json",
    "space_json_schema",
    "space_to_json",
    "text",
    "text_contains",
    "text_contains_all",
    "to_plain",
]
