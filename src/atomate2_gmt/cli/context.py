"""The settings of one ``atomate2-gmt`` invocation.

The app's callback puts a :class:`CLIState` on the click context (``ctx.obj``); every command
takes its :class:`~atomate2_gmt.settings.GMTSettings` from there with :func:`cli_settings`, so
the settings are built once per invocation, from the environment / YAML file plus the
``--project-dir`` given to the app or to the command. Nothing here writes the environment.
The settings are built on first use: ``--help`` and commands that need no settings never build
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from maggma.core import Store

    from atomate2_gmt.settings import GMTSettings

__all__ = [
    "PROJECT_DIR_HELP",
    "CLIState",
    "ProjectDirOption",
    "cli_settings",
    "existing_candidate_store",
]

PROJECT_DIR_HELP = "Project folder (default: settings PROJECT_DIR)."
ProjectDirOption = Annotated[
    Path | None, typer.Option("--project-dir", help=PROJECT_DIR_HELP, show_default=False)
]
"""The ``--project-dir`` option, of the app and of the commands that also take it after their
name (``atomate2-gmt query --project-dir P``); a command's value overrides the app's."""
SETTINGS_ERROR_EXIT = 2
"""Exit code when the settings (environment, YAML file, options) are invalid."""


@dataclass
class CLIState:
    """What the app's callback knows before the command runs: the ``--project-dir`` given to
    the app, and the settings once built."""

    project_dir: Path | None = None
    _settings: GMTSettings | None = field(default=None, repr=False)

    def settings(self, project_dir: Path | None = None) -> GMTSettings:
        """The invocation's settings; ``project_dir`` (a command's ``--project-dir``) overrides
        the app's. An invalid setting exits with code 2 and the reason (secrets masked)."""
        if project_dir is not None and project_dir != self.project_dir:
            self.project_dir = project_dir
            self._settings = None
        if self._settings is None:
            self._settings = _build_settings(self.project_dir)
        return self._settings


def _build_settings(project_dir: Path | None) -> GMTSettings:
    from pydantic import ValidationError

    from atomate2_gmt.settings import mask_uri, resolve_settings

    try:
        return resolve_settings(project_dir or None)
    except (ValidationError, ValueError) as exc:
        typer.echo(f"Error: invalid settings: {mask_uri(str(exc))}", err=True)
        raise typer.Exit(SETTINGS_ERROR_EXIT) from None


def cli_settings(ctx: typer.Context | None, project_dir: Path | None = None) -> GMTSettings:
    """The settings of the invocation ``ctx`` belongs to (built on first use, then reused);
    ``project_dir`` is the command's own ``--project-dir``, if it has one. Without a
    :class:`CLIState` on the context (a command mounted on another app) a new one is made."""
    if ctx is None:
        return CLIState().settings(project_dir)
    root = ctx.find_root()
    if not isinstance(root.obj, CLIState):
        root.obj = CLIState()
    state: CLIState = root.obj
    return state.settings(project_dir)


def existing_candidate_store(settings: GMTSettings) -> Store:
    """The configured prediction store (not connected); exits with code 1 and advice when it is
    an embedded store whose file does not exist yet (nothing was screened in that project)."""
    from atomate2_gmt.stores import EmbeddedStore, candidate_store

    store = candidate_store(settings)
    if isinstance(store, EmbeddedStore) and not Path(store.path).exists():
        typer.echo(
            f"Error: no prediction store at {store.path}; screen some candidates first "
            "(or set ATOMATE2_GMT_PROJECT_DIR / --project-dir).",
            err=True,
        )
        raise typer.Exit(1)
    return store
