"""validatord (:3221): validators and generate -> validate -> correct, contract section 13.

Routes:
- ``POST /validate {kind: "fill"|"email"|"playbook", artifact: {...}, context?: {...}}``
  -> 200 ``{validator, findings, elapsed_ms}``; 422 with the ``ValidationError`` body
  (``{"Consistency":{"reason":"..."}}``, byte for byte the reference's); 400 for an unknown
  kind or a malformed body. ``context`` is merged into the artifact's ``_context``.
- ``POST /iterate {kind, prompt, provider?, model?, system?, context?, max_iterations?,
  temperature?, max_tokens?, trace_id?}`` -> 200 ``{artifact, validation, iterations,
  history, trace_id}``; 422 ``{error, iterations, history, trace_id}`` when every attempt
  failed; 502 (504 on a timeout) with the same shape when chatd could not answer. Every call
  appends one ``session.iterate.v1`` row to ``[validatord].session_log_path``.

chatd is called directly (``[validatord].chatd_url``, default chatd's own address), with
the iterate's trace id in ``X-Lakehouse-Trace-Id``. The roster is loaded once at start
from ``[validatord].roster_path``. The logic lives in :mod:`lakehouse.validation`;
docs/llm.md has the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
from aiohttp import web

from ..clients.base import UpstreamError
from ..clients.chatd import ChatdClient, is_timeout
from ..config import Config, ConfigError
from ..openapi import answers as A
from ..openapi import api_routes
from ..validation.iterate import ChatFailure, IterateRequest, run_iterate
from ..validation.report import ValidationError
from ..validation.session_log import SessionLog
from ..validation.validators import UnknownKind, grounded_in_roster, validate
from ..validation.workers import WorkerRoster
from ..web import (
    APP_CONFIG,
    ApiError,
    adopt_trace_id,
    internal_session,
    json_response,
    make_app,
    read_json,
    trace_id,
)

__all__ = ["CHATD", "ROSTER", "SESSION_LOG", "create_app"]

log = logging.getLogger("lakehouse.validatord")

ROSTER: web.AppKey[WorkerRoster] = web.AppKey("roster", WorkerRoster)
SESSION_LOG: web.AppKey[SessionLog] = web.AppKey("session_log", SessionLog)
CHATD: web.AppKey[ChatdClient] = web.AppKey("chatd_client", ChatdClient)


class ValidateRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    artifact: dict[str, Any]
    context: dict[str, Any] | None = None


def _validation_error_response(exc: ValidationError) -> web.Response:
    # The reference's body, not the usual {"error": ...}: clients match it byte for byte.
    return web.Response(status=422, body=exc.to_json(), content_type="application/json")


async def handle_validate(request: web.Request) -> web.Response:
    body: ValidateRequest = await read_json(request, ValidateRequest)
    try:
        report = validate(body.kind, body.artifact, request.app[ROSTER], body.context)
    except UnknownKind as exc:
        raise ApiError.bad_request(str(exc)) from exc
    except ValidationError as exc:
        return _validation_error_response(exc)
    return json_response(report.to_json())


async def _chat(
    client: ChatdClient,
    *,
    system: str,
    user: str,
    model: str,
    temperature: float,
    max_tokens: int,
    trace_id: str,
) -> str:
    """The iterate loop's ChatCaller: one chatd call, failures as :class:`ChatFailure`."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    try:
        answer = await client.chat(
            model, messages, temperature=temperature, max_tokens=max_tokens, trace_id=trace_id
        )
    except UpstreamError as exc:
        # chatd's 404 (no such model) is the caller's to fix: passed on, not made a 502
        status = exc.status if exc.status == 404 else None
        raise ChatFailure(str(exc), timeout=is_timeout(exc), status=status) from exc
    return answer["content"]


async def handle_iterate(request: web.Request) -> web.Response:
    body: IterateRequest = await read_json(request, IterateRequest)
    config = request.app[APP_CONFIG]
    section = config.validatord
    try:
        body.check(section.max_iterations_cap)
    except ValueError as exc:
        raise ApiError.bad_request(str(exc)) from exc
    roster = request.app[ROSTER]
    # body trace_id, else the header (or the id the trace middleware minted)
    tid = body.trace_id or trace_id(request)
    adopt_trace_id(request, tid)

    def check(artifact: Mapping[str, Any]) -> Any:
        return validate(body.kind, artifact, roster)

    outcome = await run_iterate(
        body,
        chat=functools.partial(_chat, request.app[CHATD]),
        validate=check,
        trace_id=tid,
        default_model=section.default_model or config.models.local_fast,
        grounding=lambda artifact: grounded_in_roster(body.kind, artifact, roster),
    )
    await request.app[SESSION_LOG].append_async(outcome.session_row())
    return json_response(outcome.response_body(), status=outcome.http_status)


async def _resources_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[APP_CONFIG]
    section = config.validatord
    roster_path = config.path(section.roster_path)
    if roster_path is None:
        log.warning("no [validatord].roster_path: every worker-existence check will fail")
        app[ROSTER] = WorkerRoster()
    else:
        try:
            app[ROSTER] = await asyncio.to_thread(WorkerRoster.load, roster_path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"[validatord].roster_path: cannot read {roster_path}: {exc}") from exc
        log.info("roster %s: %d workers", roster_path, len(app[ROSTER]))
    app[SESSION_LOG] = SessionLog(config.path(section.session_log_path))
    session = internal_session(config)
    app[CHATD] = ChatdClient(
        session, config.upstream("validatord", "chatd"), timeout=section.chat_timeout_secs
    )
    try:
        yield
    finally:
        await session.close()


def create_app(config: Config) -> web.Application:
    """The validatord application for ``config`` (its ``[validatord]`` section)."""
    app = make_app("validatord", config)
    app.cleanup_ctx.append(_resources_ctx)
    r = api_routes(app)
    r.post("/validate", handle_validate, summary="Validate an artifact", body=ValidateRequest, ok=A.Report, responses={422: A.VALIDATION_ERROR})
    failed = {422: A.IterateFailed, 502: A.IterateFailed, 504: A.IterateFailed}
    r.post("/iterate", handle_iterate, summary="Generate -> validate -> correct, through chatd", body=IterateRequest, ok=A.IterateAccepted, responses=failed)
    return app
