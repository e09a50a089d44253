"""How `cropmix train` and `cropmix pretrain` end when a run cannot go on: one line, not a traceback.

Ctrl-C says what the run folder keeps and exits with 130 (as a shell does for SIGINT); a diverging
loss exits with 1. Usage and file errors (ValueError, TypeError, FileNotFoundError, a full disk or a
busy run folder) are left to `cropmix.cli.main` (exit 2).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

INTERRUPTED = 130


def run_guarded(command: str, action: Callable[[], int]) -> int:
    """`action()`, with its interruption and a diverging loss reported in one line."""
    from cropmix.train.run_folder import DivergedError

    try:
        return action()
    except KeyboardInterrupt as error:
        print(f"cropmix {command}: {error or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED
    except DivergedError as error:
        print(f"cropmix {command}: error: {error}", file=sys.stderr)
        return 1
