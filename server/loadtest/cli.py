"""`python run.py loadtest [options]`: run a load test, print a table, write the files.

Exit codes: 0 the test ran (whatever it measured), 1 it could not run to the
end, 2 bad options.
"""

from __future__ import annotations

import sys

from ..prog import prog_name
from .options import OptionsError, parse_options
from .report import format_table, write_html, write_json
from .runner import LoadTestError, run

__all__ = ["main"]


def main(argv: list[str]) -> int:
    try:
        options = parse_options(argv)
    except OptionsError as exc:
        print(f"{prog_name('loadtest')}: {exc}", file=sys.stderr)
        return 2
    try:
        result = run(options)
    except LoadTestError as exc:
        print(f"{prog_name('loadtest')}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog_name('loadtest')}: interrupted", file=sys.stderr)
        return 1
    print(format_table(result))
    if options.out is not None:
        write_json(result, options.out)
        print(f"result: {options.out}")
    if options.report is not None:
        write_html(result, options.report)
        print(f"report: {options.report}")
    return 0
