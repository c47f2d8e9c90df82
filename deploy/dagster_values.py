"""Write the values for Dagster's chart of one deployment: helm/dagster-values.yaml with its
placeholders filled in (the code location's image, pinned by digest, and the instance
database), to pass to `helm install/upgrade dagster dagster/dagster -f`.

Why a script and not a second `-f` file: Helm replaces lists instead of merging them, so an
override of `dagster-user-deployments.deployments[0].image` would drop the code location's
other settings (its arguments, environment, volumes, security context).

    python deploy/dagster_values.py --image REPO@sha256:DIGEST --db-host HOST \\
        [--db-user dagster] [--db-name trainflow_dagster] > my-dagster.yaml
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

VALUES = Path(__file__).resolve().parents[1] / "helm" / "dagster-values.yaml"
# REPOSITORY[:TAG]@sha256:<64 hex>: a digest, so every pod runs exactly the image built.
PINNED = re.compile(
    r"(?P<repository>[^@\s]+?)(?::(?P<tag>[\w.-]+))?@(?P<digest>sha256:[0-9a-f]{64})"
)


class _NoAliases(yaml.SafeDumper):
    """Write repeated blocks out in full: the file is read by people before Helm."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(image: str, db_host: str, db_user: str, db_name: str) -> dict[str, Any]:
    pinned = PINNED.fullmatch(image)
    if pinned is None:
        raise ValueError(f"--image {image!r} is not pinned by digest: REPOSITORY[:TAG]@sha256:...")
    values = yaml.safe_load(VALUES.read_text())
    values["postgresql"].update(
        postgresqlHost=db_host, postgresqlUsername=db_user, postgresqlDatabase=db_name
    )
    [location] = values["dagster-user-deployments"]["deployments"]
    # The chart writes repository:tag; a tag of the form TAG@sha256:... pins the reference.
    tag = f"{pinned['tag']}@{pinned['digest']}" if pinned["tag"] else pinned["digest"]
    location["image"].update(repository=pinned["repository"], tag=tag)
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", required=True, help="REPOSITORY[:TAG]@sha256:DIGEST")
    parser.add_argument("--db-host", required=True, help="the Dagster instance's PostgreSQL")
    parser.add_argument("--db-user", default="dagster")
    parser.add_argument("--db-name", default="trainflow_dagster")
    args = parser.parse_args(argv)
    try:
        values = render(args.image, args.db_host, args.db_user, args.db_name)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    yaml.dump(values, sys.stdout, Dumper=_NoAliases, sort_keys=False)


if __name__ == "__main__":
    main()
