"""The model server's OpenAPI 3.1 document: request schemas come from the pydantic models the
server validates with, so the document cannot drift from what the server accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from services.modelhost.schemas import (
    REQUESTS,
    ChatRequest,
    ClassifyRequest,
    EmbeddingsRequest,
    ImagesRequest,
)

if TYPE_CHECKING:
    from services.modelhost.server import ModelHost

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in REQUESTS:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas.update(RESPONSES)
    return schemas


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_LIST = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"const": "list"}, "data": {"type": "array"}},
}
RESPONSES: dict[str, Any] = {
    "Error": _ERROR,
    "ModelList": _LIST,
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "choices": {"type": "array"},
            "usage": {"type": "object"},
        },
    },
    "EmbeddingList": _LIST,
    "ImagesResponse": {
        "type": "object",
        "required": ["created", "data"],
        "properties": {
            "created": {"type": "integer"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["b64_json"],
                    "properties": {"b64_json": {"type": "string"}},
                },
            },
        },
    },
    "ClassifyResponse": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "label", "score"],
                    "properties": {
                        "index": {"type": "integer"},
                        "label": {"type": "string"},
                        "score": {"type": "number"},
                    },
                },
            },
        },
    },
}


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "invalid request",
        401: "missing or wrong API key",
        404: "model not served here",
        413: "request body too large",
        500: "the model failed",
        503: "busy, try again (Retry-After: 1)",
    }
    return {str(code): {"description": reasons[code], **_json("Error")} for code in codes}


def _post(summary: str, body: type[BaseModel], answer: str, *extra: int) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, **_json(body.__name__)},
            "responses": {
                "200": {"description": "OK", **_json(answer)},
                **_errors(400, 401, 404, 413, 500, 503, *extra),
            },
        }
    }


def openapi_spec(host: ModelHost) -> dict[str, Any]:
    chat = _post("Chat completion (stream: true answers with SSE)", ChatRequest, "ChatCompletion")
    # Before OpenAPI 3.2 (itemSchema), the schema of an event stream describes each event.
    chat["post"]["responses"]["200"]["content"]["text/event-stream"] = {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
        }
    }
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard model server",
            "version": "1.0.0",
            "description": "OpenAI-compatible routes and vLLM-style /classify. Serving: "
            + ", ".join(f"{k}={host.model_id(k)}" for k in host.served()),
        },
        "paths": {
            "/v1/models": {
                "get": {
                    "summary": "Served models",
                    "responses": {
                        "200": {"description": "OK", **_json("ModelList")},
                        **_errors(401),
                    },
                }
            },
            "/v1/chat/completions": chat,
            "/v1/embeddings": _post("L2-normalised embeddings", EmbeddingsRequest, "EmbeddingList"),
            "/v1/images/generations": _post(
                "PNG images as b64_json", ImagesRequest, "ImagesResponse"
            ),
            "/classify": _post(
                "Sentiment label and confidence per input", ClassifyRequest, "ClassifyResponse"
            ),
        },
        "components": {"schemas": _schemas()},
    }
    if host.api_key:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    return spec
