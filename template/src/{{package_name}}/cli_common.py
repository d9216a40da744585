"""What every command module shares: the console it prints to and the settings it loads.

No `from __future__ import annotations` in the command modules: typer reads the
option types at run time.
"""

import os
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from .config import Settings

console = Console()

# Embedded mode (no Prefect server configured) is quiet unless something is wrong:
# Prefect's line per task run, its temporary server's telemetry (an ERROR when
# offline), MLflow's INFO lines and its download bars read as noise or as failure.
# Set before a command imports Prefect or MLflow, which read them at import.
EMBEDDED_QUIET = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
if not os.environ.get("PREFECT_API_URL"):
    for name, value in EMBEDDED_QUIET.items():
        os.environ.setdefault(name, value)


def load_settings() -> "Settings":
    """The settings from the environment, with the project's directories created."""
    from .config import Settings

    settings = Settings()
    settings.ensure_dirs()
    # Prefect keeps its state with the project's, unless the environment says otherwise.
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    # Prefect's temporary server gets 20 s to start by default: too tight on a busy laptop.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return settings
