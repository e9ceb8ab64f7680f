"""The `formrelay` command, on its way from one module to one module per command group."""

from .forms import _first_start, cli, main, snippet

__all__ = ["_first_start", "cli", "main", "snippet"]
