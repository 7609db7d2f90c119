"""The route table's vocabulary and the OpenAPI 3.1 document built from it.

`edge.api` declares every route once, as a `Route`: path, handler, roles, request and responses.
The same table registers the aiohttp routes, drives the role check, and becomes
`/api/openapi.json`, so the document cannot drift from what the server does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REF_TEMPLATE = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Content:
    """A request or response body: a pydantic model, or a raw JSON schema, of a media type."""

    media_type: str = "application/json"
    model: type[BaseModel] | None = None
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Reply:
    description: str
    content: Content | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: frozenset[str] | None  # None: no login needed
    tag: str
    responses: Mapping[int, Reply]
    body: Content | None = None
    params: Sequence[Param] = ()
    description: str = ""


def _models(routes: Sequence[Route], error_model: type[BaseModel]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(error_model, "serialization"): None}
    for route in routes:
        if route.body is not None and route.body.model is not None:
            wanted[(route.body.model, "validation")] = None
        for reply in route.responses.values():
            if reply.content is not None and reply.content.model is not None:
                wanted[(reply.content.model, "serialization")] = None
    return list(wanted)


def build_document(
    routes: Sequence[Route],
    *,
    title: str,
    version: str,
    description: str,
    error_model: type[BaseModel],
    security_schemes: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    refs, defs = models_json_schema(_models(routes, error_model), ref_template=REF_TEMPLATE)
    error_ref = refs[(error_model, "serialization")]

    def media(content: Content, mode: JsonSchemaMode) -> dict[str, Any]:
        if content.model is not None:
            schema: Mapping[str, Any] = refs[(content.model, mode)]
        else:
            schema = content.schema or {}
        return {content.media_type: {"schema": dict(schema)}}

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": error_ref}}}

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        responses: dict[str, Any] = {}
        for status, reply in sorted(route.responses.items()):
            out: dict[str, Any] = {"description": reply.description}
            if reply.content is not None:
                out["content"] = media(reply.content, "serialization")
            if reply.headers:
                out["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}}
                    for name, text in reply.headers.items()
                }
            responses[str(status)] = out
        # The failures every route of a kind shares, unless the route documents its own.
        if route.body is not None or route.params:
            responses.setdefault("400", error("Malformed request (body or parameters)"))
        if route.roles is not None:
            responses.setdefault("401", error("Not logged in, or the session/token expired"))
            responses.setdefault("403", error("Logged in with a role that may not do this, or a "
                                              "cookie-authenticated change without the CSRF header"))
        op: dict[str, Any] = {
            "operationId": route.handler.__name__.strip("_"),
            "summary": route.summary,
            "tags": [route.tag],
            "responses": dict(sorted(responses.items())),
        }
        if route.description:
            op["description"] = route.description
        if route.params:
            op["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": dict(p.schema),
                    **({"style": "form", "explode": True} if p.schema.get("type") == "array" else {}),
                }
                for p in route.params
            ]
        if route.body is not None:
            op["requestBody"] = {"required": True, "content": media(route.body, "validation")}
        if route.roles is None:
            op["security"] = []
        else:
            op["security"] = [{name: []} for name in security_schemes]
            op["x-linli-roles"] = sorted(route.roles)
        paths.setdefault(route.path, {})[route.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {k: dict(v) for k, v in security_schemes.items()},
        },
    }
