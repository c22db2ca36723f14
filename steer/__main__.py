"""``python -m steer``: the same CLI as the ``steer`` console script (used by torchrun relaunches)."""

from steer.cli import main

main()
