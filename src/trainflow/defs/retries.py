"""Which failures are retried: I/O (object storage, warehouse, MLflow) yes, logic no.

Every trainflow asset carries `IO_RETRY`. Deterministic failures (a broken contract, a
bad config, a missing partition, a model library rejecting its parameters) would fail the
same way again, so `fail_fast` turns them into `dagster.Failure(allow_retries=False)`:
the step fails at once with the original message, and no retry hides the cause.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg
from lightgbm.basic import LightGBMError

# 3 retries, after (2^n - 1) * 2 s +/- 2 s: about 2, 6 and 14 s, 16 to 28 s in all (Dagster's
# exponential backoff). Rides out an object store or warehouse restart of about 20 seconds;
# anything longer fails clearly and is re-executed from failure.
IO_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# ValueError covers trainflow's own domain errors (ContractViolation, DatasetError,
# FeatureError, ConfigError, LakeError's refusals) and pydantic's validation errors.
DETERMINISTIC_ERRORS: tuple[type[Exception], ...] = (ValueError, LightGBMError, dg.Failure)

F = TypeVar("F", bound=Callable[..., Any])


def fail_fast(fn: F) -> F:
    """Re-raise deterministic errors as non-retryable Dagster failures (message kept)."""

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except dg.Failure:
                raise
            except DETERMINISTIC_ERRORS as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from exc

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except dg.Failure:
            raise
        except DETERMINISTIC_ERRORS as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    return wrapper  # type: ignore[return-value]
