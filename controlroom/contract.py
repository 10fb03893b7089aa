"""The API contract: what each route takes and answers, validated in one place and published.

A route declares its input with pydantic models where it declares its permission
(``@requires(..., query=Model, body=Model, response=Model, status=201, produces="image/jpeg")``).
:func:`contract_middleware` runs after authorisation, so a caller without the right learns
nothing about the input a route expects:

- every path parameter and query value, on every route, passes the one text rule
  (``storage.text``: no control characters, no lone surrogates); JSON bodies pass it in
  :func:`controlroom.errors.json_body`, which every body goes through;
- a declared ``query`` model is validated against the query string, a declared ``body`` model
  against the JSON body; the handler reads the parsed model with :func:`query_of` /
  :func:`body_of`. A failure is a 400 whose message names the field.

:func:`openapi_document` builds the OpenAPI 3.1 document from the router and these
declarations (never written by hand); ``GET /api/v1/openapi.json`` serves it, and
``tests/test_api_fuzz.py`` fuzzes the running service from it as every role.
docs/design/api.md says how to declare a route.
"""

from __future__ import annotations

import re
import types
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.json_schema import models_json_schema

from controlroom.errors import json_body
from controlroom.permissions import RouteSpec, route_spec
from controlroom.timefmt import iso_to_us
from storage import Invalid
from storage.db import MAX_ID
from storage.text import bad_character

M = TypeVar("M", bound=BaseModel)
QUERY = web.RequestKey("contract_query", BaseModel)
BODY = web.RequestKey("contract_body", BaseModel)
REF = "#/components/schemas/{model}"
# Every error is {"error": "..."} (controlroom.errors), sometimes with details beside it.
ERROR_STATUSES = (400, 401, 403, 404, 409, 410, 416, 422, 423, 429, 502, 503, 507)
ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
    "description": "What went wrong, for a person to read; some errors add details beside it.",
}

# --- the building blocks of input models ------------------------------------------------------

MAX_TEXT_CHARS = 2000  # notes, reasons, descriptions: a paragraph, not a document
MAX_NAME_CHARS = 200  # names of people, cameras, sites, hotlists, tokens (the columns' size)
MAX_LIMIT = 10_000  # the most rows any listing returns at once
MAX_OFFSET = 1_000_000  # deeper pages are a search to narrow, not a page to fetch


class Body(BaseModel):
    """A JSON body: unknown fields are refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """A query string: unknown parameters are ignored (browsers and proxies add their own)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _single_line(value: Any) -> Any:
    if isinstance(value, str) and bad_character(value, multiline=False):
        raise ValueError("line breaks and tabs are not allowed in a name")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Name = Annotated[str, BeforeValidator(_single_line), Field(min_length=1, max_length=MAX_NAME_CHARS)]
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


def _time(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time with an offset, e.g. 2026-05-01T12:00:00+01:00")
    try:
        return iso_to_us(value, "time")
    except Invalid as exc:
        raise ValueError(str(exc).removeprefix("time: ")) from None


# An ISO 8601 time with an offset (1970..2200) in, UTC microseconds out (controlroom.timefmt).
Time = Annotated[int, BeforeValidator(_time), WithJsonSchema({"type": "string", "format": "date-time"})]


def limit(default: int, maximum: int) -> Any:
    """A page size: 1 to ``maximum`` (at most MAX_LIMIT), ``default`` when absent."""
    return Field(default, ge=1, le=min(maximum, MAX_LIMIT))


def offset() -> Any:
    """Rows to skip: 0 to MAX_OFFSET."""
    return Field(0, ge=0, le=MAX_OFFSET)


Flag = Annotated[bool, BeforeValidator(lambda v: v.lower() in ("1", "true", "yes") if isinstance(v, str) else v),
                 WithJsonSchema({"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"]})]


# --- validating requests -----------------------------------------------------------------------


_MESSAGES = {"extra_forbidden": "unknown field", "missing": "is required"}


def _errors(exc: ValidationError, where: str) -> str:
    """``body: windows.0.from: ...; colour: unknown field``: each bad field, by name."""
    parts = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(the whole body)"
        message = _MESSAGES.get(err["type"], err["msg"]).removeprefix("Value error, ")
        parts.append(f"{field[:80]}: {message}")
    return f"{where}: " + "; ".join(parts[:5])


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_list(a) for a in get_args(annotation))
    return get_origin(annotation) in (list, tuple, set, frozenset)


def query_values(request: web.Request, model: type[BaseModel]) -> dict[str, Any]:
    """The query string as the model's fields: repeated parameters for list fields. An empty
    value is the same as leaving the parameter out (a form's empty field: ``?from=&to=``)."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        values = [v for v in request.query.getall(key, []) if v != ""]
        if values:
            found[key] = values if _is_list(field.annotation) else values[0]
    return found


def validate(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(_errors(exc, where)) from None


def check_request_text(request: web.Request) -> None:
    """The one text rule (storage.text) on every path parameter and query value."""
    for name, value in request.match_info.items():
        bad = bad_character(value)
        if bad is not None:
            raise Invalid(f"path parameter {name}: control character U+{ord(bad):04X} is not allowed")
    for name, value in request.query.items():
        bad = bad_character(name) or bad_character(value)
        if bad is not None:
            raise Invalid(f"query parameter {name[:40]!r}: control character U+{ord(bad):04X} is not allowed")


def query_of(request: web.Request, model: type[M]) -> M:
    """The route's parsed query (its ``@requires(query=model)``)."""
    parsed = request.get(QUERY)
    if not isinstance(parsed, model):
        raise RuntimeError(f"{request.method} {request.path} declares no query={model.__name__}")
    return parsed


def body_of(request: web.Request, model: type[M]) -> M:
    """The route's parsed JSON body (its ``@requires(body=model)``)."""
    parsed = request.get(BODY)
    if not isinstance(parsed, model):
        raise RuntimeError(f"{request.method} {request.path} declares no body={model.__name__}")
    return parsed


def _spec(request: web.Request) -> RouteSpec | None:
    info = request.match_info
    return None if info.http_exception is not None else route_spec(info.handler)


@web.middleware
async def contract_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    spec = _spec(request)
    if spec is not None:
        check_request_text(request)
        if spec.query is not None:
            request[QUERY] = validate(spec.query, query_values(request, spec.query), "query")
        if spec.body is not None:
            data = await json_body(request) if request.can_read_body else {}
            request[BODY] = validate(spec.body, data, "body")
    return await handler(request)


# --- the published document --------------------------------------------------------------------


def _path_template(resource: web.AbstractResource) -> tuple[str, dict[str, str]]:
    """``/a/{b}/{c}.jpg`` and each parameter's regex ("" for aiohttp's default)."""
    info = resource.get_info()
    if "path" in info:
        return info["path"], {}
    if "formatter" in info:
        patterns = {}
        for name in re.findall(r"\{(\w+)\}", info["formatter"]):
            found = re.search(r"\(\?P<" + name + r">(.*?)\)(?=[^)]|$)", info["pattern"].pattern)
            pattern = found.group(1) if found else ""
            patterns[name] = "" if pattern == "[^{}/]+" else pattern
        return info["formatter"], patterns
    prefix = info.get("prefix", "/")
    return prefix.rstrip("/") + "/{filename}", {"filename": ".+"}


def _path_parameter(name: str, pattern: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = f"^(?:{pattern})$"
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _summary(handler: Any) -> tuple[str, str]:
    doc = (handler.__doc__ or "").strip()
    first = doc.split("\n\n", 1)[0].replace("\n", " ") if doc else handler.__name__.replace("_", " ")
    return first[:120], doc


def openapi_document(app: web.Application, *, title: str = "controlroom", version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route of ``app``, from the router and the routes'
    declarations (permission, disclosure, query/body/response models, media type)."""
    routes = []
    for route in app.router.routes():
        spec = route_spec(route.handler)
        if route.method == "HEAD" or route.resource is None or spec is None:
            continue
        routes.append((route, spec))
    # Bodies as they are validated, answers as they are written.
    wanted = {(s.body, "validation") for _, s in routes if s.body} | {(s.response, "serialization") for _, s in routes
                                                                         if s.response}
    refs, defs = models_json_schema(sorted(wanted, key=lambda m: (m[0].__name__, m[1])), ref_template=REF)
    components: dict[str, Any] = dict(defs.get("$defs", {}))
    components["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for route, spec in routes:
        template, patterns = _path_template(route.resource)
        summary, description = _summary(route.handler)
        params = [_path_parameter(name, pattern) for name, pattern in patterns.items()]
        if spec.query is not None:
            schema = spec.query.model_json_schema(ref_template=REF, by_alias=True)
            components.update(schema.pop("$defs", {}))
            required = set(schema.get("required", ()))
            for name, prop in schema.get("properties", {}).items():
                param = {"name": name, "in": "query", "required": name in required, "schema": prop}
                if prop.get("description"):
                    param["description"] = prop["description"]
                params.append(param)
        success: dict[str, Any] = {"description": "done"}
        if spec.produces:
            body_schema = refs[(spec.response, "serialization")] if spec.response else (
                {"type": "object"} if spec.produces == "application/json" else {})
            success["content"] = {spec.produces: {"schema": body_schema}}
        responses: dict[str, Any] = {str(spec.status): success}
        if spec.produces.split("/")[0] in ("image", "video") or spec.produces == "application/zip":
            responses["206"] = {**success, "description": "the part a Range header asked for"}
        for status in ERROR_STATUSES:
            responses[str(status)] = {"$ref": "#/components/responses/Error"}
        operation: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.handler.__module__.rsplit('.', 1)[-1]}_{route.handler.__name__}",
            "summary": summary,
            "description": description,
            "x-permission": spec.permission.value,
            "x-discloses": spec.discloses.value if spec.discloses else None,
            "x-audit-action": spec.action or None,
            "parameters": params,
            "responses": responses,
            "security": [] if spec.permission.value == "public" else [{"bearer": []}, {"session": [], "csrf": []}],
        }
        if spec.body is not None:
            optional = not spec.body.model_json_schema().get("required")
            operation["requestBody"] = {
                "required": not optional,
                "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
            }
        paths.setdefault(template, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title, "version": version,
            "description": "Generated from the service's routes (controlroom.contract). x-permission is the "
                           "right a caller needs; x-discloses what the route hands out, each disclosure "
                           "audited under x-audit-action.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {"Error": {"description": "an error", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "controlroom_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                         "description": "required with the session cookie on state-changing requests"},
            },
        },
    }
