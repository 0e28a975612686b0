#!/usr/bin/env python3
"""A minimal Centrifugo-style proxy backend for the benchmarks: it allows every
connect (anonymous user) and every publish, answering as fast as Tornado can.

    python bench/proxy_backend.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio

from tornado.web import Application, RequestHandler

ANSWERS = {
    "connect": b'{"result":{"user":""}}',
    "publish": b'{"result":{}}',
    "subscribe": b'{"result":{}}',
    "rpc": b'{"result":{}}',
}


class Allow(RequestHandler):
    def initialize(self, answer: bytes) -> None:
        self.answer = answer

    def post(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(self.answer)


async def serve(port: int) -> None:
    app = Application([(f"/{name}", Allow, {"answer": body}) for name, body in ANSWERS.items()])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
