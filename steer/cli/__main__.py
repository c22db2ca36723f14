"""``python -m steer.cli``: the same CLI as the ``steer`` console script."""

from steer.cli import main

main()
