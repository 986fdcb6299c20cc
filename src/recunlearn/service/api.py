"""The HTTP API (FastAPI; the OpenAPI spec is at /openapi.json).

Every route but /v1/health needs ``Authorization: Bearer <token>``: no, an unknown, a revoked or an
expired token is 401, a read token on a write route is 403. Answers show where a deletion stands, never
the ids it named. Recommendations and scores come from the served version, held in
memory; every request first reads the version pointer, so once the ledger reports a request's version
served, no answer comes from an older one (see :class:`ServedModel`).
"""

import hashlib
import json
import threading
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.interactions import Vocabulary
from recunlearn.errors import RecUnlearnError
from recunlearn.service.config import ServiceConfig, ServiceHome
from recunlearn.service.store import (
    REQUEST_ID_RULE,
    ConflictError,
    DeletionStatus,
    RequestNotFound,
    check_request_id,
)
from recunlearn.service.versions import current_name, load_current
from recunlearn.train.runtime import configure_threads
from recunlearn.unlearn.base import Unlearner

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
RequestId = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(check_request_id)
]


class Error(BaseModel):
    """Every 4xx answer: one sentence naming what is wrong."""

    detail: str


class DeletionIn(BaseModel):
    """A deletion request; ``request_id`` is the client's idempotency key."""

    model_config = ConfigDict(extra="forbid")
    request_id: RequestId = Field(description=f"Request ids are {REQUEST_ID_RULE}.")
    """Resubmitting the same id returns the same record; the same id with other content is 409."""
    pairs: list[tuple[Id, Id]] = Field(default_factory=list)
    """(user, item) interactions to remove."""
    users: list[Id] = Field(default_factory=list)
    """Users all of whose interactions are removed."""
    items: list[Id] = Field(default_factory=list)
    """Items all of whose interactions are removed."""


class ScoresIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[tuple[Id, Id]] = Field(min_length=1)
    """(user, item) pairs to score."""


class ScoresOut(BaseModel):
    version: str
    scores: list[float]
    """Higher = more likely liked, one per pair, in order."""


class Recommendation(BaseModel):
    item: str
    score: float


class RecommendationsOut(BaseModel):
    user: str
    version: str
    items: list[Recommendation]


class HealthOut(BaseModel):
    status: Literal["ok", "no-model", "worker-waiting", "worker-failed"]
    """'worker-waiting': the in-process worker waits for the lock another worker holds (503, as
    'worker-failed' and 'no-model')."""
    version: str | None
    requests: dict[str, int]
    """Number of deletion requests by status."""
    worker: Literal["in-process", "external"]
    worker_error: str | None = None


class Served(NamedTuple):
    """One loaded version: what a request answers from, read as one reference."""

    name: str
    model: Unlearner
    users_with_data: np.ndarray
    """Per user index, whether the user has a training row (a deleted user has none)."""


class ServedModel:
    """The version in memory, always the one the pointer file names when a request starts.

    Every request reads the pointer (one small file) before answering: when the worker has switched
    it, the request waits for the new version to load rather than answer from the old one, so a
    status the ledger reports (it flips after the pointer) is never contradicted by an answer. A
    watcher thread loads a new version as soon as the pointer names it, so requests rarely wait."""

    def __init__(self, home: ServiceHome, poll_seconds: float):
        self.home = home
        self.poll_seconds = poll_seconds
        self.current: Served | None = None
        self._loading = threading.Lock()

    def get(self) -> Served:
        current = self.current
        if current is None or current_name(self.home) != current.name:
            with self._loading:  # a load in progress (the watcher's) is waited for, not duplicated
                current = self.current
                if current is None or current_name(self.home) != current.name:
                    current = self._load()
        return current

    def watch(self, stop: threading.Event) -> None:
        """Follow the pointer every ``poll_seconds``, loading a new version before a request needs it."""
        while not stop.wait(self.poll_seconds):
            current = self.current
            if current is not None and current_name(self.home) != current.name:
                try:
                    self.get()
                except (RecUnlearnError, OSError):  # the next request reports it (503)
                    pass

    def _load(self) -> Served:
        name, model = load_current(self.home)
        has_data = np.zeros(model.train.n_users, bool)
        has_data[model.train.user] = True
        self.current = Served(name, model, has_data)
        return self.current


TOKEN_CACHE_SIZE = 1024
"""Known tokens whose role is kept in memory (10 s each)."""

WORKER_STOP_SECONDS = 60.0
"""How long the server waits at shutdown for its worker to finish the pass it is in."""


class AsciiJSONResponse(JSONResponse):
    """JSON written as ASCII: an id holding a lone surrogate (valid JSON, not encodable as UTF-8) is
    echoed in an error as an escape instead of failing the answer."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Error} for code in codes}


def create_app(home: ServiceHome, *, worker: bool = False) -> FastAPI:
    """The API of one service home; ``worker=True`` also runs the worker in a thread of this process."""
    config: ServiceConfig = home.config()
    ledger = home.ledger(config)
    served = ServedModel(home, config.poll_seconds)
    state: dict[str, Any] = {"worker_error": None, "worker_running": False}
    token_cache: dict[str, tuple[float, str]] = {}
    configure_threads()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        stop = threading.Event()
        threading.Thread(
            target=served.watch, args=(stop,), name="recunlearn-version-watch", daemon=True
        ).start()
        if worker:
            from recunlearn.service.worker import run_in_thread

            thread = run_in_thread(
                home,
                stop,
                lambda exc: state.update(worker_error=f"{type(exc).__name__}: {exc}"),
                lambda running: state.update(worker_running=running),
            )
        yield
        stop.set()
        if worker:  # it ends its repair process and releases its lock before the server exits
            thread.join(WORKER_STOP_SECONDS)

    app = FastAPI(
        title="recunlearn deletion service",
        version="1",
        lifespan=lifespan,
        default_response_class=AsciiJSONResponse,
        description="Deletion requests against a deployed recommender: every request is stored, "
        "applied by an unlearning method, published in a new model version and audited.",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, exc: RequestValidationError) -> AsciiJSONResponse:
        """422 naming each bad field, without echoing the input (a NaN or a lone surrogate cannot be
        written as JSON, and the client has its input already)."""
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return AsciiJSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException) -> AsciiJSONResponse:
        return AsciiJSONResponse(
            status_code=exc.status_code,
            content={"detail": exc.detail},
            headers=getattr(exc, "headers", None),
        )

    bearer = HTTPBearer(auto_error=False)

    def role_of(token: str) -> str | None:
        """The token's role, cached for 10 s (or until it expires, if sooner): a revoked token is refused
        within 10 s. Unknown tokens are not cached (the cache would grow with every guess) and the
        cache is bounded."""
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = token_cache.get(key)
        if cached is None or time.time() > cached[0]:
            found = ledger.token_role(token)
            if found is None:
                token_cache.pop(key, None)
                return None
            role, expires_at = found
            if len(token_cache) >= TOKEN_CACHE_SIZE:
                token_cache.clear()
            cached = token_cache[key] = (min(time.time() + 10.0, expires_at or float("inf")), role)
        return cached[1]

    def require(needed: str):
        def check(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> str:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise HTTPException(
                    401,
                    "missing bearer token (Authorization: Bearer <token>)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            role = role_of(credentials.credentials)
            if role is None:
                raise HTTPException(
                    401,
                    "unknown, revoked or expired bearer token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if needed == "write" and role != "write":
                raise HTTPException(403, "this token may read but not submit deletions")
            return role

        return check

    def model() -> Served:
        try:
            return served.get()
        except (RecUnlearnError, OSError) as exc:
            raise HTTPException(503, f"no model version can be served: {exc}") from None

    def known(vocabulary: Vocabulary, ids: list[str], kind: str) -> None:
        """404 naming the ids the served version does not know; the placeholder an erased id left in
        its vocabulary names nobody, so it is unknown too."""
        named = list(dict.fromkeys(ids))
        placeholders = vocabulary.placeholders(named)
        missing = [i for i in named if i not in vocabulary or i in placeholders]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise HTTPException(404, f"unknown {kind} id(s): {shown}{more}")

    @app.post(
        "/v1/deletions",
        status_code=202,
        response_model=DeletionStatus,
        responses={
            200: {"model": DeletionStatus, "description": "Already submitted with this id"},
            **_errors(400, 401, 403, 404, 409, 413, 503),
        },
    )
    def submit_deletion(
        body: DeletionIn, response: Response, _role: Annotated[str, Depends(require("write"))]
    ) -> DeletionStatus:
        """Ask to forget interactions, users or items. Answers 202 once the request is durably stored.

        A retry is answered from the ledger before the ids are checked against the served version:
        once published, that version no longer knows the users the request erased."""
        size = len(body.pairs) + len(body.users) + len(body.items)
        if size == 0:
            raise HTTPException(400, "the request names no pairs, users or items")
        if size > config.max_request_ids:
            raise HTTPException(
                413, f"the request names {size} ids; at most {config.max_request_ids} per request"
            )
        request = DeletionRequest(
            request_id=body.request_id, pairs=body.pairs, users=body.users, items=body.items
        )
        try:
            stored = ledger.resubmission(request)
        except ConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        if stored is not None:
            response.status_code = 200
            return stored.public()
        current = model().model
        known(current.train.users, body.users + [p[0] for p in body.pairs], "user")
        known(current.train.items, body.items + [p[1] for p in body.pairs], "item")
        try:  # the ledger checks the id again: a concurrent submission may have stored it meanwhile
            record, created = ledger.submit(request)
        except ConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        if not created:
            response.status_code = 200
        return record.public()

    @app.get(
        "/v1/deletions/{request_id}",
        response_model=DeletionStatus,
        responses=_errors(401, 403, 404),
    )
    def get_deletion(
        request_id: Annotated[RequestId, Path()], _role: Annotated[str, Depends(require("read"))]
    ) -> DeletionStatus:
        """A request's status, and once applied its audit: how many rows were removed, how, and in which
        version (the removed pairs only as keyed digests)."""
        try:
            return ledger.get(request_id).public()
        except RequestNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get(
        "/v1/recommendations/{user}",
        response_model=RecommendationsOut,
        responses=_errors(401, 403, 404, 503),
    )
    def recommendations(
        user: Annotated[str, Path(max_length=200)],
        _role: Annotated[str, Depends(require("read"))],
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
    ) -> RecommendationsOut:
        """Top-k unseen items for a user, from the served version."""
        name, current, users_with_data = model()
        known(current.train.users, [user], "user")
        if not users_with_data[current.train.users.index([user])[0]]:
            raise HTTPException(
                404, f"user {user!r} has no interactions in the served model (deleted)"
            )
        top = current.recommend(user, k=k)
        return RecommendationsOut(
            user=user, version=name, items=[Recommendation(item=i, score=s) for i, s in top]
        )

    @app.post("/v1/scores", response_model=ScoresOut, responses=_errors(401, 403, 404, 413, 503))
    def scores(body: ScoresIn, _role: Annotated[str, Depends(require("read"))]) -> ScoresOut:
        """Scores of (user, item) pairs from the served version."""
        if len(body.pairs) > config.max_score_pairs:
            raise HTTPException(
                413, f"{len(body.pairs)} pairs; at most {config.max_score_pairs} per call"
            )
        name, current, _ = model()
        known(current.train.users, [p[0] for p in body.pairs], "user")
        known(current.train.items, [p[1] for p in body.pairs], "item")
        values = current.score([p[0] for p in body.pairs], [p[1] for p in body.pairs])
        return ScoresOut(version=name, scores=[float(v) for v in values])

    @app.get("/v1/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
    def health(response: Response) -> HealthOut:
        """Liveness and what is served; needs no token. 503 when no version can be served or the
        in-process worker is not running (failed, or waiting for another worker's lock)."""
        try:
            name = served.get().name
            status = (
                "worker-failed"
                if state["worker_error"]
                else "worker-waiting"
                if worker and not state["worker_running"]
                else "ok"
            )
        except (RecUnlearnError, OSError):
            name, status = None, "no-model"
        if status != "ok":
            response.status_code = 503
        return HealthOut(
            status=status,
            version=name,
            requests=ledger.by_status(),
            worker="in-process" if worker else "external",
            worker_error=state["worker_error"],
        )

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413 before the app parses them (declared or streamed)."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(
                send,
                413 if declared.isdigit() else 400,
                f"request body over {self.limit} bytes"
                if declared.isdigit()
                else "malformed Content-Length header",
            )
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.limit:
                return await self._refuse(send, 413, f"request body over {self.limit} bytes")
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send, status: int, detail: str) -> None:
        payload = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
