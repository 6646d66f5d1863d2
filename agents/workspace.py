"""The workspace: the directory holding a project's database, Chroma store, graph checkpoints,
adapters, reports and exports (``--workspace``, ``$AGENTS_WORKSPACE`` or ``./workspace``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agents.config import ConfigError

WORKSPACE_ENV = "AGENTS_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    """The directory holding a project's database, Chroma store, checkpoints, adapters and reports.

    Attributes:
        root: The workspace directory.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> Workspace:
        """The workspace at ``path``, else ``$AGENTS_WORKSPACE``, else ``./workspace``."""
        chosen = path if path is not None else os.environ.get(WORKSPACE_ENV) or "workspace"
        return cls(Path(chosen).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.root / "agents.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def chroma_dir(self) -> Path:
        return self.root / "chroma"

    @property
    def checkpoints_path(self) -> Path:
        """SQLite file for graph checkpoints (kept apart from the store's own database)."""
        return self.root / "checkpoints.sqlite"

    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    def ensure(self) -> Workspace:
        """Create the workspace directories; returns ``self``."""
        for directory in (
            self.root,
            self.chroma_dir,
            self.adapters_dir,
            self.reports_dir,
            self.exports_dir,
        ):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ConfigError(
                    f"workspace {self.root} cannot be used: {directory} is a file, not a "
                    "directory; pass another --workspace"
                ) from None
            except PermissionError:
                raise ConfigError(
                    f"workspace {self.root} cannot be used: no permission to create {directory}; "
                    "pass another --workspace"
                ) from None
        return self

    def adapter_dir(self, run_id: str, role: str, round: int) -> Path:
        """Where the adapter trained for ``role`` in ``round`` of ``run_id`` lives (not created)."""
        return self.adapters_dir / run_id / role / f"round-{round}"
