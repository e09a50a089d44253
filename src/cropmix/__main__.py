"""`python -m cropmix ...` = the `cropmix` command (so `torchrun -m cropmix train ...` works)."""

from .cli import main

raise SystemExit(main())
