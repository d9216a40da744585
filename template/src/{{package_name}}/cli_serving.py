"""Serving commands: `serve`, `transformer` and `model-server`; `cli` registers them.

`serve` and `transformer` become the model service (`serving.server`);
`model-server` runs MLServer under `serving.supervisor`.
"""

import os
from typing import TYPE_CHECKING, Annotated

import typer

from .cli_common import console, load_settings

if TYPE_CHECKING:
    from .config import Settings

# KServe adds arguments of its own model server (e.g. --workers, --predictor_protocol);
# `transformer` accepts and ignores them, as KServe's own transformers do.
TRANSFORMER_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def serve(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default from settings)")
    ] = None,
) -> None:
    """Serve the champion over HTTP in the foreground (Ctrl-C or SIGTERM stops it)."""
    from .serving import server

    settings = load_settings()
    port = port or settings.port
    console.print(
        f"serving models:/{settings.model_name}@{settings.champion_alias} "
        f"at {server.base_url(settings, port)}"
    )
    _become_service(settings, port)


def _become_service(settings: "Settings", port: int) -> None:
    """Replace this process by the model service on `port`, configured by `settings`."""
    from .serving import server

    # Become the server: Ctrl-C and a container's SIGTERM then reach BentoML directly,
    # which stops its workers, instead of orphaning them.
    command = server.command(settings, port)
    os.execvpe(command[0], command, server.environment(settings))


def _v2_url(host: str) -> str:
    # KServe passes the predictor as host[:port]; a URL with its scheme is taken as it is.
    return host if "://" in host else f"http://{host}"


def transformer(
    context: typer.Context,
    model_name: Annotated[
        str, typer.Option("--model_name", help="The model's name on the V2 predictor")
    ],
    predictor_host: Annotated[
        str, typer.Option("--predictor_host", help="The V2 predictor, host[:port]")
    ],
    http_port: Annotated[
        int | None,
        typer.Option("--http_port", min=1, max=65535, help="Port (default from settings)"),
    ] = None,
    shadow_host: Annotated[
        str | None,
        typer.Option("--shadow_host", help="A V2 server scoring copies of requests, host[:port]"),
    ] = None,
    shadow_model_name: Annotated[
        str | None,
        typer.Option("--shadow_model_name", help="The model's name there (default --model_name)"),
    ] = None,
) -> None:
    """Serve the model service in front of a V2 predictor (KServe transformer, Seldon front).

    Requests, feature lookups, the inference log and metrics are the service's;
    scoring is a V2 call to the predictor (MLServer, KServe, Seldon), which also
    decides which model version answers.
    """
    from .serving import server

    if context.args:
        console.print(f"ignoring the arguments {' '.join(context.args)}")
    settings = load_settings().model_copy(
        update={
            "predictor_url": _v2_url(predictor_host),
            "predictor_model_name": model_name,
            "shadow_url": _v2_url(shadow_host) if shadow_host else "",
            "shadow_model_name": shadow_model_name or model_name,
        }
    )
    port = http_port or settings.port
    shadow = f", shadow scored by {settings.shadow_url}" if shadow_host else ""
    console.print(
        f"serving {model_name} from {settings.predictor_url} "
        f"at {server.base_url(settings, port)}{shadow}"
    )
    _become_service(settings, port)


def model_server(
    port: Annotated[
        int | None,
        typer.Option(help="V2 HTTP port (default from settings)", min=1, max=65535),
    ] = None,
) -> None:
    """Serve the champion with MLServer over V2 (KServe's and Seldon's server), in the foreground.

    Every `reload_interval` seconds a new champion (promote, rollback) is loaded
    without a restart. Ctrl-C or SIGTERM stops it.
    """
    from .serving.supervisor import supervise

    # Server logs and errors may hold brackets: printed as they are, not as rich markup.
    code = supervise(
        load_settings(),
        port,
        # One line whatever the terminal's width: scripts read the URL from it.
        info=lambda message: console.print(message, soft_wrap=True),
        error=lambda message: console.print(message, style="red", markup=False),
    )
    if code:
        raise typer.Exit(code)
