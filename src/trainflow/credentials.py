"""Refused logins: a service said no to trainflow's credentials.

A wrong password or key is refused the same way on every attempt, so waiting cannot heal
it, and calling it "unreachable" sends the reader to the network. These plain functions
recognise a refusal by the service's own words and codes (PostgreSQL's authentication
failures, S3's 401/403 and its InvalidAccessKeyId, MLflow's 401/403), so the retry policy
fails it at once and every message names the service and the variables to check.
Credentials themselves never appear: trainflow never holds them (settings.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from trainflow.settings import redact_userinfo


@dataclass(frozen=True)
class Service:
    """Who refused, and where its credentials come from (what the reader should check)."""

    name: str
    check: str


WAREHOUSE = Service(
    "PostgreSQL (the warehouse)",
    "PGPASSWORD (or the PGPASSFILE entry) and the user in TRAINFLOW_WAREHOUSE_URL",
)
DAGSTER_INSTANCE = Service(
    "PostgreSQL (the Dagster instance)", "DAGSTER_PG_PASSWORD and DAGSTER_PG_USER"
)
# A PostgreSQL refusal that reached nobody who knows which database it was for.
POSTGRES = Service(
    "PostgreSQL",
    "the password of that database: PGPASSWORD for the warehouse (TRAINFLOW_WAREHOUSE_URL), "
    "DAGSTER_PG_PASSWORD for the Dagster instance, the one in MLFLOW_TRACKING_URI for a "
    "database tracking store",
)
S3 = Service(
    "S3 (the lake's object storage)",
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN too for temporary keys), "
    "and that the key may use the bucket",
)
MLFLOW = Service(
    "MLflow (the tracking server)",
    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN, "
    "and that the user may use the experiment and the registered model",
)


class CredentialsRefusedError(Exception):
    """A service refused the login: never retried (it would be refused again); the message
    says who refused and which variables to check, never their values. `where` is a
    location safe to show (the warehouse URL, which never holds a password: its user is
    what to check)."""

    def __init__(self, service: Service, reason: str, where: str = "") -> None:
        self.service = service
        self.reason = reason
        at = f" at {where}" if where else ""
        super().__init__(
            f"credentials refused by {service.name}{at}: {redact_userinfo(reason).rstrip('.')}; "
            f"check {service.check}"
        )


# libpq's and the server's words for a login it refused (a password, or another method, a
# pg_hba.conf rule, a role the server does not know). A server that is down, starting or
# gone, or a database that does not exist, says otherwise (warehouse: "unreachable").
_POSTGRES_REFUSALS = (
    "authentication failed for user",
    "no password supplied",
    "pg_hba.conf rejects connection",
    "no pg_hba.conf entry",
)
_POSTGRES_UNKNOWN_ROLE = re.compile(r'role "[^"]*" does not exist')
# S3's error codes for keys it does not accept or that may not do this.
_S3_REFUSAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "AuthFailure",
    "AllAccessDisabled",
    "AccountProblem",
}
_MLFLOW_REFUSAL_CODES = {"UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED"}
# Parts of MLflow's REST and artifact-proxy paths: a 401/403 for one of them is MLflow's.
_MLFLOW_PATHS = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/3.0/mlflow")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def postgres_login_refused(exc: BaseException) -> bool:
    """Whether a PostgreSQL driver error (psycopg2, or SQLAlchemy around it) is a refused
    login rather than an unreachable or restarting server."""
    message = str(exc).lower()
    return any(words in message for words in _POSTGRES_REFUSALS) or bool(
        _POSTGRES_UNKNOWN_ROLE.search(message)
    )


def postgres_reason(exc: BaseException) -> str:
    """The server's one line about it (`password authentication failed for user "x"`)."""
    for line in str(exc).strip().splitlines():
        if "FATAL:" in line:
            return " ".join(line.split("FATAL:", 1)[1].split())
    lines = str(exc).strip().splitlines()
    return lines[0].split(" failed: ", 1)[-1].strip() if lines else type(exc).__name__


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from (`raise ... from ...`, or raised
    while handling), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def refused_login(
    exc: BaseException, postgres: Service = POSTGRES
) -> CredentialsRefusedError | None:
    """The refused login somewhere in `exc`'s chain of causes, as trainflow's error (the
    cause's own one, if trainflow already said it); None when no login was refused.
    `postgres`: whose database a bare PostgreSQL refusal is about, when the caller knows."""
    for cause in causes(exc):
        if isinstance(cause, CredentialsRefusedError):
            return cause
    for cause in causes(exc):
        found = _refusal_of(cause, postgres)
        if found is not None:
            return found
    return None


def _refusal_of(exc: BaseException, postgres: Service) -> CredentialsRefusedError | None:
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith(("psycopg", "sqlalchemy")) and name == "OperationalError":
        if postgres_login_refused(exc):
            return CredentialsRefusedError(postgres, postgres_reason(exc))
        return None
    if module.startswith("botocore"):
        return _boto_refusal(exc)
    if name in {"MlflowException", "RestException"}:
        code = str(getattr(exc, "error_code", ""))
        if code not in _MLFLOW_REFUSAL_CODES:
            return None
        message = str(getattr(exc, "message", exc))
        return CredentialsRefusedError(
            MLFLOW, message if message.startswith(code) else f"{code}: {message}"
        )
    if module.startswith("requests") and name == "HTTPError":
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", 0)
        url = str(getattr(response, "url", ""))
        if status in (401, 403) and any(path in url for path in _MLFLOW_PATHS):
            return CredentialsRefusedError(MLFLOW, str(exc))
        return None
    if type(exc) is OSError:  # deltalake's object-store errors are plain OSErrors
        return _object_store_refusal(exc)
    return None


def _boto_refusal(exc: BaseException) -> CredentialsRefusedError | None:
    """boto3's ClientError with S3's refusal (dagster-aws's client: report files), or no
    credentials found at all."""
    name = type(exc).__name__
    if name in {"NoCredentialsError", "PartialCredentialsError"}:
        return CredentialsRefusedError(S3, str(exc))
    if name != "ClientError":
        return None
    response = getattr(exc, "response", {}) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = response.get("Error", {}).get("Code", "")
    if code in _S3_REFUSAL_CODES or status in (401, 403):
        message = response.get("Error", {}).get("Message", "")
        return CredentialsRefusedError(S3, f"{code or status}: {message}".rstrip(": "))
    return None


_S3_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_S3_XML_MESSAGE = re.compile(r"<Message>([^<]+)</Message>")
_STORE_PATH = re.compile(r"for path (\S+)")


def _object_store_refusal(exc: BaseException) -> CredentialsRefusedError | None:
    """deltalake's plain OSError for an S3 response of 401 or 403 (object_store's "lacked
    the necessary privileges" / "lacked valid authentication credentials"). A local
    folder's permission error has no HTTP status in it and is not matched."""
    text = _ANSI.sub("", str(exc))
    status = re.search(r"\b(401 Unauthorized|403 Forbidden)\b", text)
    code = _S3_XML_CODE.search(text)
    refused_code = code is not None and code.group(1) in _S3_REFUSAL_CODES
    if status is None and not refused_code:
        return None
    message = _S3_XML_MESSAGE.search(text)
    path = _STORE_PATH.search(text)
    parts = [
        code.group(1) if code else "",
        f"({status.group(1)})" if status else "",
    ]
    reason = " ".join(p for p in parts if p)
    if message:
        reason += f": {message.group(1)}"
    if path:
        reason += f" (path {path.group(1)})"
    return CredentialsRefusedError(S3, reason)
