"""Load tester options: parsed, derived and refused with the option's name."""

from __future__ import annotations

import pytest
from wsfan.loadtest import options as options_module
from wsfan.loadtest.cli import main
from wsfan.loadtest.options import Options, OptionsError, parse_options
from wsfan.loadtest.streams import endpoint_of


def test_a_comma_list_of_rates_is_a_ramp():
    opts = parse_options(["--rate", "10,20,50", "--duration", "2"])
    assert opts.rates == (10.0, 20.0, 50.0) and opts.total_seconds == 6.0


def test_url_may_be_repeated_to_spread_clients():
    opts = parse_options(["--url", "ws://a:1/ws", "--url", "ws://b:2/ws"])
    assert opts.urls == ("ws://a:1/ws", "ws://b:2/ws")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--clients", "0"], "--clients"),
        (["--url", "http://x/ws"], "--url"),
        (["--rate", "-1"], "--rate"),
        (["--duration", "0"], "--duration"),
        (["--layout", "channels", "--channels", "500", "--clients", "10"], "--channels"),
        (["--channel-prefix", "a b"], "--channel-prefix"),
        (["--publisher", "http", "--api-url", "ftp://x"], "--api-url"),
        (["--transport", "sse", "--encoding", "msgpack"], "--transport"),
    ],
)
def test_out_of_range_values_name_the_option(argv: list[str], named: str):
    with pytest.raises(OptionsError, match=named):
        parse_options(argv)


def test_stream_endpoints_sit_beside_the_websocket_url():
    endpoint = endpoint_of("wss://h:8443/ws/connection/websocket", "sse")
    assert (endpoint.host, endpoint.port, endpoint.secure) == ("h", 8443, True)
    assert endpoint.stream_path == "/ws/connection/sse"
    assert endpoint.emulation_path == "/ws/emulation"
    assert endpoint_of("ws://h/", "http_stream").stream_path == "/connection/http_stream"


def test_channel_layouts():
    assert Options(layout="hot", clients=5).channel_name(0) == "loadtest"
    spread = Options(layout="channels", clients=10, channels=3)
    assert [spread.channel_of(i) for i in range(5)] == [0, 1, 2, 0, 1]
    own = Options(layout="per-client", clients=4)
    assert own.channel_count == 4 and own.channel_name(3) == "loadtest.3"


def test_shares_are_contiguous_and_cover_every_client():
    shares = Options(clients=10, workers=3).shares()
    assert [(r.start, r.stop) for r in shares] == [(0, 4), (4, 7), (7, 10)]


def test_automatic_workers_stay_under_the_open_files_limit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(options_module, "fd_budget", lambda: 100)
    assert Options(clients=250).worker_count >= 3


def test_too_few_workers_for_the_open_files_limit_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(options_module, "fd_budget", lambda: 100)
    with pytest.raises(OptionsError, match="open-files limit"):
        Options(clients=250, workers=2).checked()


def test_secrets_are_masked_in_the_result():
    d = Options(token_secret="s", api_key="k").to_dict()
    assert d["token_secret"] == d["api_key"] == "***"


def test_command_line_exits_2_on_a_bad_option(capsys: pytest.CaptureFixture[str]):
    assert main(["--clients", "0"]) == 2
    assert "--clients" in capsys.readouterr().err
