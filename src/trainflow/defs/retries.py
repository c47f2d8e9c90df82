"""Which failures are retried: only those that can heal by waiting.

Every trainflow asset carries `IO_RETRY`, and `fail_fast` wraps every asset function and the
IO manager's reads and writes. It classifies each failure by its cause, walking the chain
of exceptions (`raise ... from ...`), and lets only transient ones reach the retry policy:
- retried: the network, object storage, the warehouse or MLflow's store not answering or
  refusing for a moment (connection refused or reset, timeouts, HTTP 5xx and throttling,
  a database that is locked or restarting), a Delta commit that lost a race with another
  writer, and a Parquet read cut short;
- failed at once, with the original message: a missing input ("materialize it first"), a
  schema mismatch, a contract violation, a config error, a refused request (4xx, a missing
  registry entry) and programming errors (assertions, type and key errors, ...). They
  would fail the same way again, and three retries (16 to 28 s) would only hide the cause;
- failed at once, saying so: a refused login (the warehouse's password, S3's keys, MLflow's
  user or token; `trainflow.credentials`), even where the driver calls it an operational
  error. The message names the service and the variables to check.
An error nobody listed is deterministic by default: a retry has to be earned.
"""

import errno
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from trainflow.credentials import causes, refused_login

# 3 retries, after (2^n - 1) * 2 s +/- 2 s: about 2, 6 and 14 s, 16 to 28 s in all (Dagster's
# exponential backoff). Rides out an object store or warehouse restart of about 20 seconds;
# anything longer fails clearly and is re-executed from failure.
IO_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
    errno.EAGAIN,
}
# OSErrors about the local file system: a missing input or a wrong path stays wrong.
_PERMANENT_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
# What a read cut short looks like when pyarrow or polars decode a partial Parquet object.
# A retry reads the object again; one that is really corrupt fails after the retries with
# the reader's message.
_CUT_SHORT = (
    "unexpected end of stream",
    "unexpected eof",
    "couldn't deserialize thrift",
    "parquet file size is",
    "magic bytes",
    "truncated",
    "error decoding response body",
)
_TRANSIENT_HTTP_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}
_TRANSIENT_MLFLOW_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def _is_transient_one(exc: BaseException) -> bool:
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    message = str(exc).lower()
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError):
        if exc.errno in _TRANSIENT_ERRNOS:
            return True
        # deltalake reports object-store failures ("Generic S3 error: error sending
        # request", timeouts) as a plain OSError without errno; local ones carry an errno.
        return exc.errno is None
    if name == "CommitFailedError":  # deltalake: another writer committed first
        return True
    if name == "DeltaError" and "already exists" in message:  # another writer created it
        return True
    if name == "ArrowInvalid" or (module.startswith("polars") and name == "ComputeError"):
        return any(marker in message for marker in _CUT_SHORT)
    if module.startswith(("botocore", "urllib3", "requests")):
        if name == "ClientError":
            response = getattr(exc, "response", {}) or {}
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = response.get("Error", {}).get("Code", "")
            return status >= 500 or code in _TRANSIENT_HTTP_CODES
        return any(word in name for word in ("Connection", "Timeout", "Endpoint", "ProtocolError"))
    if name == "MlflowException":
        return getattr(exc, "error_code", "") in _TRANSIENT_MLFLOW_CODES
    if module.startswith(("sqlalchemy", "psycopg", "psycopg2", "sqlite3")):
        # A database that is locked, restarting or unreachable; not a bad statement.
        return name == "OperationalError"
    if module.startswith(("_duckdb", "duckdb")):
        return name in {"IOException", "ConnectionException"} and "lock" in message
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether waiting and trying again can make this failure go away. A refused login
    never does, whatever the driver calls it (psycopg2's OperationalError, deltalake's
    OSError)."""
    if refused_login(exc) is not None:
        return False
    return any(_is_transient_one(cause) for cause in causes(exc))


F = TypeVar("F", bound=Callable[..., Any])


def _deterministic(exc: Exception) -> dg.Failure:
    """trainflow's own errors already name partition, column and rule; a library's error
    gets its class name, which says what kind of failure it is (SchemaMismatchError, ...).
    A refused login says so, naming the service and the variables to check."""
    refused = refused_login(exc)
    if refused is not None:
        return dg.Failure(description=str(refused), allow_retries=False)
    own = type(exc).__module__.startswith("trainflow")
    message = str(exc) if own else f"{type(exc).__name__}: {exc}"
    return dg.Failure(description=message, allow_retries=False)


def fail_fast(fn: F) -> F:
    """Let transient failures reach the retry policy; turn every other one into a
    non-retryable `dagster.Failure` that keeps the original message."""

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except dg.Failure:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise _deterministic(exc) from exc

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except dg.Failure:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _deterministic(exc) from exc

    return wrapper  # type: ignore[return-value]
