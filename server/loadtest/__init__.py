"""The load tester: many simulated clients against any server speaking the client protocol.

    from . import Options, run
    result = run(Options(urls=("ws://127.0.0.1:8888/connection/websocket",), clients=1000))

`run_async` does the same inside a running event loop. Clients live in worker
processes (`worker.py`), each holding a share under the open-files limit; the
coordinator (`runner.py`) walks them through connect, publish, drain and stop
and builds one result dict (`results.py`); `report.py` writes it as JSON, a
table and a self-contained HTML page.
"""

from .options import Options, OptionsError, parse_options
from .runner import LoadTestError, run, run_async

__all__ = ["LoadTestError", "Options", "OptionsError", "parse_options", "run", "run_async"]
