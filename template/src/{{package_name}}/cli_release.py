"""Release commands: `promote`, `rollback`, `sync-release` and the `rollout` group.

Each changes which version serves (through `io.registry` and `jobs.rollout`)
and rewrites a KServe or Seldon deployment's release file (`io.release`) to
match. `cli` registers them.
"""

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .cli_common import console, load_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .config import Settings
    from .io.registry import ChampionChange, Rollout
    from .io.release import ReleaseFile
    from .jobs.rollout import StepReport

rollout_app = typer.Typer(
    help="Canary and shadow rollouts of the challenger in the running services "
    "(blue-green is `promote` and `rollback`). Like those two, they rewrite the "
    "release file of a KServe or Seldon deployment (RELEASE_FILE) to match."
)


def _switch_time(settings: "Settings") -> str:
    # No restart: running services poll the registry (and answer POST /reload at once).
    when = (
        f"within {settings.reload_interval:g} s"
        if settings.reload_interval > 0
        else "on POST /reload"
    )
    return f"running services switch {when}"


def _open_release(client: "MlflowClient", settings: "Settings") -> "ReleaseFile | None":
    # Checked before the registry changes, so that the file cannot fall behind it.
    from .io import release

    try:
        return release.open_release(client, settings)
    except release.ReleaseError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None


def _follow_release(
    client: "MlflowClient",
    settings: "Settings",
    release_file: "ReleaseFile | None",
    *,
    halted_canary: str | None = None,
) -> None:
    """Rewrite the release file (KServe, Seldon) as the registry now says, and show how."""
    from .io import release

    if release_file is None:
        return
    update = release.follow(client, settings, release_file, halted_canary=halted_canary)
    # Never wrapped: a URI stays whole, to be copied or searched for.
    for change in update.changes:
        was = change.before or "empty"
        line = f"{update.path}: {change.key}={change.after} (was {was})"
        console.print(line, markup=False, soft_wrap=True)
    for note in update.notes:
        console.print(f"{update.path}: {note}", style="yellow", markup=False, soft_wrap=True)
    if update.changes:
        console.print(f"commit {update.path} to release it", markup=False, soft_wrap=True)
    else:
        console.print(f"{update.path}: unchanged", markup=False, soft_wrap=True)


def _print_champion_change(change: "ChampionChange", settings: "Settings") -> None:
    if change.ended_rollout is not None:
        console.print(f"ended the rollout ({change.ended_rollout.describe()})")
    if change.previous is not None and change.previous.version == change.champion.version:
        console.print(
            f"champion of {change.champion.name}: version {change.champion.version} "
            "serves every request"
        )
    else:
        was = change.previous.version if change.previous else "none"
        console.print(
            f"champion of {change.champion.name}: version {change.champion.version} (was {was})"
        )
    console.print(_switch_time(settings))


def promote(
    version: Annotated[
        str | None, typer.Argument(help="Version to promote (default: the challenger)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Promote even though the version did not pass the gate")
    ] = False,
) -> None:
    """Make the challenger (or VERSION) the champion; `rollback` undoes it.

    A KServe or Seldon deployment's release file (RELEASE_FILE) is rewritten to
    match. Exits 1 when the version did not pass the gate (see --force), 2 when
    there is nothing to promote (no challenger, no such version, already the
    champion) or the release file cannot follow.
    """
    from .io import registry

    settings = load_settings()
    client = registry.connect(settings)
    release_file = _open_release(client, settings)
    try:
        change = registry.promote(client, settings, version, force=force)
    except registry.RolloutError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1 if isinstance(error, registry.GateNotPassedError) else 2) from None
    _print_champion_change(change, settings)
    _follow_release(client, settings, release_file)


def rollback() -> None:
    """Undo the last change: end a canary or shadow rollout, else give the champion
    alias back to the version the last `promote` replaced.

    A KServe or Seldon deployment's release file (RELEASE_FILE) is rewritten to
    match. Exits 2 when there is nothing to undo or the release file cannot follow.
    """
    from .io import registry

    settings = load_settings()
    client = registry.connect(settings)
    release_file = _open_release(client, settings)
    try:
        change = registry.rollback(client, settings)
    except registry.RolloutError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    _print_champion_change(change, settings)
    ended = change.ended_rollout
    halted = ended.challenger if ended is not None and ended.mode == "canary" else None
    _follow_release(client, settings, release_file, halted_canary=halted)


def sync_release() -> None:
    """Rewrite the release file (KServe, Seldon) from the registry as it stands.

    For changes no command wrote: a training run that promoted a version or
    started a rollout by itself (ROLLOUT_STRATEGY). Exits 2 without a release
    file, or when it cannot follow.
    """
    from .io import registry

    settings = load_settings()
    client = registry.connect(settings)
    release_file = _open_release(client, settings)
    if release_file is None:
        console.print(f"no release file at {settings.release_file}", style="red", markup=False)
        raise typer.Exit(2)
    _follow_release(client, settings, release_file)


def _print_step_report(report: "StepReport") -> None:
    requests = ", ".join(f"{variant} {count}" for variant, count in report.requests.items())
    table = Table(
        "check",
        "result",
        "detail",
        title=f"Champion {report.champion} against version {report.rollout.challenger} "
        f"since {report.rollout.since:%Y-%m-%d %H:%M:%S} UTC ({requests})",
    )
    for check in report.checks:
        table.add_row(
            check.name, "[green]pass[/]" if check.passed else "[red]fail[/]", check.detail
        )
    console.print(table)


def _print_rollout(rollout: "Rollout | None", settings: "Settings") -> None:
    if rollout is None:
        console.print("no rollout: the champion serves every request")
    else:
        console.print(rollout.describe())
    console.print(_switch_time(settings))


@rollout_app.command("canary")
def rollout_canary(
    percent: Annotated[
        int | None,
        typer.Option(min=1, max=100, help="Share of customers for the challenger (1-100)"),
    ] = None,
    next_step: Annotated[
        bool, typer.Option("--next", help="The next step of 5, 10, 25, 50, 100 (the default)")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Take the step although the gate or a check failed")
    ] = False,
) -> None:
    """Route a share of customers to the challenger: start at 5 %, then step up; 100 promotes.

    Each step up is checked on the requests served since the last one; a failed
    check refuses the step, naming it. Exits 1 when refused (see --force), 2
    when there is nothing to roll out.
    """
    from .io import registry
    from .jobs import rollout

    if percent is not None and next_step:
        raise typer.BadParameter("give --percent or --next, not both")
    settings = load_settings()
    client = registry.connect(settings)
    release_file = _open_release(client, settings)
    try:
        change = rollout.canary(client, settings, percent, force=force)
    except rollout.StepRefusedError as error:
        _print_step_report(error.report)
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    except registry.RolloutError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1 if isinstance(error, registry.GateNotPassedError) else 2) from None
    if change.report is not None:
        _print_step_report(change.report)
        if not change.report.passed:
            console.print("[yellow]forced past the failed check(s)[/]")
    if change.promoted is not None:
        _print_champion_change(change.promoted, settings)
    else:
        _print_rollout(change.after, settings)
    _follow_release(client, settings, release_file)


@rollout_app.command("shadow")
def rollout_shadow() -> None:
    """Let the challenger score a copy of every request; answers stay the champion's.

    Exits 2 when there is nothing to roll out.
    """
    from .io import registry
    from .jobs import rollout

    settings = load_settings()
    client = registry.connect(settings)
    release_file = _open_release(client, settings)
    try:
        change = rollout.shadow(client, settings)
    except registry.RolloutError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    _print_rollout(change.after, settings)
    _follow_release(client, settings, release_file)


@rollout_app.command("status")
def rollout_status() -> None:
    """Champion, challenger, the rollout under way and how its checks stand now."""
    from .io import registry
    from .jobs import rollout

    settings = load_settings()
    client = registry.connect(settings)
    state = registry.serving_state(client, settings)
    console.print(f"champion: {state.champion or 'none'}, challenger: {state.challenger or 'none'}")
    active = state.active_rollout
    if state.rollout is not None and active is None:
        console.print(f"ignored, its challenger moved on: {state.rollout.describe()}")
    _print_rollout(active, settings)
    if active is not None:
        report = rollout.check_step(client, settings)
        _print_step_report(report)
        upcoming = rollout.next_step(active.percent if active.mode == "canary" else 0)
        verdict = "[green]ready[/]" if report.passed else "[red]not ready[/]"
        console.print(f"next canary step, {upcoming} %: {verdict}")
