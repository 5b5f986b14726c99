"""``python -m recplatform.cli``: the same as the ``recplatform`` command."""

from recplatform.cli import main

main()
