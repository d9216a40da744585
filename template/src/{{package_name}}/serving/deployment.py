"""What a `Predictor` serves, and where it reads it: the registry, or the V2 servers.

A `Deployment` is replaced as a whole. `from_registry` builds the next one from
the champion alias and the rollout recorded in the registry, reusing models
already loaded; `from_servers` (transformer mode) from the versions the V2
servers report. Both return None when nothing changed, so the caller keeps
serving what it has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..io import registry
from .scorers import UNKNOWN_VERSION, LoadedModel, ModelServerError, RemoteModel

if TYPE_CHECKING:
    from ..config import Settings
    from .scorers import Scorer, V2Model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """What is served, replaced as a whole: the champion and, during a rollout, the challenger."""

    champion: Scorer
    challenger: Scorer | None = None
    rollout: registry.Rollout | None = None
    # Scores a copy of every request after the answer: the challenger in shadow mode.
    shadow: Scorer | None = None


def from_registry(settings: Settings, previous: Deployment | None) -> Deployment | None:
    """The champion and rollout the registry names now; None if nothing changed."""
    client = registry.connect(settings)
    state = registry.serving_state(client, settings)
    rollout = state.active_rollout
    if state.champion is None or (
        previous is not None
        and previous.champion.ref.version == state.champion
        and previous.rollout == rollout
    ):
        return None
    loaded = {
        model.ref.version: model
        for model in ((previous.champion, previous.challenger) if previous else ())
        if model is not None
    }

    def model(version: str) -> Scorer:
        if version in loaded:
            return loaded[version]
        ref = registry.get_version(client, settings.model_name, version)
        return LoadedModel(ref, registry.load_model(ref))

    champion = model(state.champion)
    challenger = model(rollout.challenger) if rollout is not None else None
    shadow = challenger if rollout is not None and rollout.mode == "shadow" else None
    return Deployment(champion, challenger, rollout, shadow)


def from_servers(
    settings: Settings,
    server: V2Model,
    shadow_server: V2Model | None,
    previous: Deployment | None,
) -> Deployment | None:
    """The V2 models with the versions their servers report now; None if none changed."""
    champion = _remote_model(
        server,
        previous.champion if previous else None,
        settings.predictor_model_version or UNKNOWN_VERSION,
    )
    shadow = None
    if shadow_server is not None:
        shadow = _remote_model(
            shadow_server, previous.shadow if previous else None, UNKNOWN_VERSION
        )
    if previous is not None and (champion, shadow) == (previous.champion, previous.shadow):
        return None
    return Deployment(champion, shadow=shadow)


def _remote_model(server: V2Model, previous: Scorer | None, fallback: str) -> Scorer:
    try:
        version = server.version() or fallback
    except ModelServerError as error:
        # Not an outage of this service: requests get 503 until the server is back.
        log.warning("cannot read the served version, keeping the last one: %s", error)
        if previous is not None:
            return previous
        version = fallback
    # The V2 server knows its model's name and version only.
    model = RemoteModel(registry.ModelRef(server.model_name, version, "", {}), server)
    # The same object while nothing changed: a swap is noticed by identity.
    return previous if previous == model else model
