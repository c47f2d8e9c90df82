"""`trainflow replay --from DAY --every N`: the year replayed as production would live it
(docs/continuous-training.md): land a week, run what the sensors and the schedule request,
repeat; then a timeline report under the lake's `_reports/replay/`."""

from __future__ import annotations

import datetime as dt

import click

from trainflow.cli.group import main
from trainflow.settings import Settings

DATE = click.DateTime(formats=["%Y-%m-%d"])


@main.command()
@click.option("--from", "start", type=DATE, required=True, help="The first day the replay lands.")
@click.option("--every", type=click.IntRange(min=1), default=7, show_default=True,
              help="Days landed at a time.")  # fmt: skip
@click.option("--through", type=DATE, default="2013-12-31", show_default=True,
              help="The last day the replay lands.")  # fmt: skip
def replay(start: dt.datetime, every: int, through: dt.datetime) -> None:
    """Replay the days from --from through --through, --every days at a time, on a
    warehouse landed up to --from (a fresh TRAINFLOW_HOME), with the config in
    TRAINFLOW_CONFIG (a rolling one retrains as the days land)."""
    import dagster as dg

    from trainflow import replay_report
    from trainflow.defs.replay import ReplayError
    from trainflow.defs.replay import replay as run_replay
    from trainflow.defs.resources import lake_resource
    from trainflow.replay_report import Week

    settings = Settings.from_env()

    def say(week: Week) -> None:
        candidates = ", ".join(f"v{c.version} {c.verdict}" for c in week.candidates) or "none"
        click.echo(
            f"{week.first}..{week.last}: {len(week.runs)} run(s), candidates: {candidates}; "
            f"champion {f'v{week.champion}' if week.champion else '-'}"
            + (f"; alerts: {'; '.join(week.alerts)}" if week.alerts else "")
        )

    # Without DAGSTER_HOME, a throwaway instance on disk, not an in-memory one: the weekly
    # schedule adds the experiment's partition through its context's instance, which
    # Dagster opens only from a persistent instance.
    instance = (
        dg.DagsterInstance.get() if settings.dagster_home else dg.DagsterInstance.local_temp()
    )
    try:
        weeks = run_replay(settings, start.date(), every, through.date(), instance, on_week=say)
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    title = f"Replay {start.date()}..{through.date()}, every {every} days"
    text = replay_report.markdown(title, weeks, generated=dt.datetime.now(dt.UTC).isoformat())
    store = lake_resource(settings).object_store("_reports")
    store.put("replay/timeline.md", text.encode(), "text/markdown")
    store.put("replay/timeline.html", replay_report.html_page(title, text).encode(), "text/html")
    store.put("replay/timeline.png", replay_report.timeline_png(title, weeks), "image/png")
    s = replay_report.summarize(weeks)
    click.echo(
        f"replayed {s.weeks} week(s): {s.retrains} candidates, {s.promotions} promoted, "
        f"{s.rejections} rejected; live ROC AUC mean {s.mean_live_auc} over {s.live_days} "
        f"day(s), {s.breached_days} breached; {s.alerts} alert(s)"
    )
    click.echo(f"timeline: {store.uri('replay/timeline.md')} (.html, .png beside it)")
