"""Who may call the backend: Basic auth as Label Studio sends it, plus a shared secret header for /webhook.

Rules (a pure ASGI middleware, so they cover every path, unknown ones included):

* nothing configured: everything is open;
* BASIC_AUTH_USER/PASS set: every request needs those credentials, except that GET /health and GET / without
  any Authorization header stay open for container and load-balancer probes (they reveal only the status and
  the model version). /health *with* wrong credentials is refused, so Label Studio reports bad credentials
  when the backend is added;
* WEBHOOK_SECRET set: /webhook takes valid Basic auth or `X-Webhook-Secret: <secret>`, because the webhook
  Label Studio creates for the backend sends no credentials (an operator adds the header to it).

One more rule, for the management routes (start or cancel jobs, force a training, promote, rollback): they change
state beyond Label Studio's protocol, so they need Basic auth *configured* (and then, by the rules above,
presented); without it they answer 403 naming the settings (`require_management`). Nothing that arrives through
/webhook can force a promotion: START_TRAINING there always trains under the normal promotion rule.

Credentials are compared with hmac.compare_digest; neither header value is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.asgi import send_json
from backend.config import Settings
from backend.errors import ManagementDisabled

log = logging.getLogger(__name__)

WEBHOOK_SECRET_HEADER = "x-webhook-secret"
PROBE_PATHS = frozenset({"/health", "/"})
WEBHOOK_PATH = "/webhook"
REALM = "sentiment-backend"


class Credentials:
    """The expected Basic auth pair and webhook secret (bytes, for constant-time comparison)."""

    def __init__(self, user: str | None, password: str | None, webhook_secret: str | None) -> None:
        self._user = user.encode() if user else None
        self._password = password.encode() if password else None
        self._secret = webhook_secret.encode() if webhook_secret else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """The credentials the settings configure."""
        password = settings.basic_auth_pass.get_secret_value() if settings.basic_auth_pass else None
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        return cls(settings.basic_auth_user if settings.basic_auth_enabled else None, password, secret)

    @property
    def basic_enabled(self) -> bool:
        """True when a Basic auth pair is configured."""
        return self._user is not None and self._password is not None

    @property
    def anything_enabled(self) -> bool:
        """True when any check is configured."""
        return self.basic_enabled or self._secret is not None

    def basic_ok(self, authorization: bytes | None) -> bool:
        """True when an Authorization header carries exactly the configured user and password."""
        if not self.basic_enabled or not authorization:
            return False
        scheme, _, encoded = authorization.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        assert self._user is not None and self._password is not None
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        return bool(sep) and user_ok and password_ok

    def secret_ok(self, header: bytes | None) -> bool:
        """True when the webhook secret header matches the configured secret."""
        if self._secret is None or header is None:
            return False
        return hmac.compare_digest(header.strip(), self._secret)

    def allows(self, method: str, path: str, headers: dict[bytes, bytes]) -> bool:
        """The rules of the module docstring for one request."""
        authorization = headers.get(b"authorization")
        if path == WEBHOOK_PATH:
            if self._secret is not None:
                return self.basic_ok(authorization) or self.secret_ok(headers.get(WEBHOOK_SECRET_HEADER.encode()))
            return self.basic_ok(authorization) if self.basic_enabled else True
        if not self.basic_enabled:
            return True
        if path in PROBE_PATHS and method in ("GET", "HEAD") and authorization is None:
            return True
        return self.basic_ok(authorization)


MANAGEMENT_DISABLED = (
    "this route starts, cancels or changes jobs and models, so it needs Basic auth: set BASIC_AUTH_USER and "
    "BASIC_AUTH_PASS on the backend (or use the sentiment-backend CLI on the machine that runs it)"
)


def require_management(request: Request) -> None:
    """FastAPI dependency of the management routes: ManagementDisabled (403) unless Basic auth is configured
    (when it is, the middleware has already checked this request's credentials)."""
    if not request.app.state.backend.settings.basic_auth_enabled:
        raise ManagementDisabled(MANAGEMENT_DISABLED)


def exposure_warnings(settings: Settings) -> list[str]:
    """The warnings `serve` logs at start for what these settings leave open (none with Basic auth on)."""
    if settings.basic_auth_enabled:
        return []
    warnings = [
        "Basic auth is off (BASIC_AUTH_USER and BASIC_AUTH_PASS unset): Label Studio's calls (/predict, /setup, "
        "/health) are unauthenticated and the management routes (jobs, promote, rollback) answer 403"
    ]
    if not (settings.webhook_secret and settings.webhook_secret.get_secret_value()):
        warnings.append(
            f"NO AUTHENTICATION AT ALL: neither Basic auth nor WEBHOOK_SECRET is set, so anyone who can reach "
            f"{settings.host}:{settings.port} can post events to /webhook (START_TRAINING trains, never forced); set "
            "BASIC_AUTH_USER/BASIC_AUTH_PASS and WEBHOOK_SECRET before exposing this port"
        )
    return warnings


class AuthMiddleware:
    """Refuses requests the Credentials do not allow with 401 JSON and `WWW-Authenticate: Basic`."""

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.credentials.anything_enabled:
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.credentials.allows(scope["method"], path, headers):
            await self.app(scope, receive, send)
            return
        log.info("refused %s %s: missing or wrong credentials", scope["method"], path)
        await _unauthorized(send, path)


async def _unauthorized(send: Send, path: str) -> None:
    detail = "authentication required"
    if path == WEBHOOK_PATH:
        detail = "authentication required: Basic auth or the X-Webhook-Secret header"
    await send_json(send, 401, {"detail": detail},
                    [(b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode())])
