"""Every rich Console, Table and Progress of steer lives in this package; library code never prints.

``from steer import ui`` gives all of it: :mod:`steer.ui.console` (consoles, errors, plain and JSON
output, streamed answers), :mod:`steer.ui.progress` (bars, the training display, plain progress
lines off a terminal) and :mod:`steer.ui.reports` (tables and summaries of results).
"""

from steer.ui.console import *  # noqa: F403
from steer.ui.console import __all__ as _console
from steer.ui.progress import *  # noqa: F403
from steer.ui.progress import __all__ as _progress
from steer.ui.reports import *  # noqa: F403
from steer.ui.reports import __all__ as _reports

__all__ = [*_console, *_progress, *_reports]
