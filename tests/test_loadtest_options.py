"""Load tester options: parsed, derived and refused with the option's name."""

from __future__ import annotations

from collections import Counter

import pytest
from wsfan.loadtest import options as options_module
from wsfan.loadtest.cli import main
from wsfan.loadtest.options import Options, OptionsError, ZipfSampler, parse_options
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
        (["--layout", "zipf", "--channels", "20", "--channels-per-client", "0"], "--channels-per"),
        (["--layout", "zipf", "--channels", "20", "--channels-per-client", "21"], "--channels-per"),
        (["--layout", "zipf", "--channels", "20", "--zipf", "0"], "--zipf"),
        (["--layout", "zipf", "--channels", "20", "--zipf", "-1"], "--zipf"),
        (["--layout", "zipf", "--channels", "20", "--zipf", "nan"], "--zipf"),
        (["--layout", "zipf", "--channels", "20", "--zipf", "inf"], "--zipf"),
        (["--layout", "zipf", "--channels", "20", "--transport", "sse"], "--layout"),
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


def test_zipf_accepts_the_edges_of_channels_per_client():
    for k in (1, 20):
        argv = ["--layout", "zipf", "--channels", "20", "--channels-per-client", str(k)]
        assert parse_options(argv).channels_per_client == k
    small = parse_options(["--layout", "zipf", "--channels", "20", "--zipf", "0.01"])
    assert (small.zipf, small.channels_per_client, small.channel_count) == (0.01, 5, 20)
    # other layouts ignore --channels-per-client: the default 5 over one channel is fine
    assert parse_options(["--layout", "hot"]).channels_per_client == 5


def test_zipf_clients_take_distinct_channels_chosen_by_the_seed():
    opts = Options(layout="zipf", clients=50, channels=20, channels_per_client=3, seed=7)
    per_client = [opts.channels_of(i) for i in range(50)]
    assert all(len(set(c)) == 3 and all(0 <= x < 20 for x in c) for c in per_client)
    assert per_client == [opts.channels_of(i) for i in range(50)]  # deterministic
    assert len(set(per_client)) > 40  # spread, not one set for all
    assert opts.channel_of(4) == per_client[4][0]
    reseeded = Options(layout="zipf", clients=50, channels=20, channels_per_client=3, seed=8)
    assert [reseeded.channels_of(i) for i in range(50)] != per_client
    assert Options(layout="channels", clients=10, channels=3).channels_of(4) == (1,)


def test_zipf_sampler_is_deterministic_skewed_and_reaches_every_channel():
    sampler = ZipfSampler(20, 1.0, seed=3)
    draws = [sampler.sample() for _ in range(20000)]
    again = ZipfSampler(20, 1.0, seed=3)
    assert [again.sample() for _ in range(20000)] == draws
    counts = Counter(draws)
    assert set(counts) == set(range(20))  # every channel reachable
    assert counts.most_common(1)[0][0] == 0  # rank 1 (channel 0) the most frequent
    assert counts[0] > counts[1] > counts[4] > counts[19]
    # s = 1 over 20 ranks: rank 1 gets 1/H(20) = 27.8 %, rank 2 half that
    assert sampler.probability(0) == pytest.approx(1 / sum(1 / k for k in range(1, 21)))
    assert counts[0] / 20000 == pytest.approx(sampler.probability(0), abs=0.015)
    assert counts[1] / 20000 == pytest.approx(sampler.probability(1), abs=0.015)
    assert sum(sampler.probability(r) for r in range(20)) == pytest.approx(1.0)


def test_zipf_exponent_sets_the_skew():
    flat, steep = ZipfSampler(100, 0.1), ZipfSampler(100, 2.0)
    assert flat.probability(0) < 0.05 < 0.5 < steep.probability(0)
    assert ZipfSampler(1, 1.0).sample() == 0
    with pytest.raises(ValueError):
        ZipfSampler(0, 1.0)


def test_publications_go_round_robin_or_zipf_by_layout():
    spread = Options(layout="channels", clients=10, channels=3).channel_picker()
    assert [spread(i) for i in range(5)] == [0, 1, 2, 0, 1]
    opts = Options(layout="zipf", clients=10, channels=30, seed=5)
    first, second = opts.channel_picker(), opts.channel_picker()
    picks = [first(i) for i in range(1000)]
    assert picks == [second(i) for i in range(1000)] and all(0 <= c < 30 for c in picks)
    assert Counter(picks).most_common(1)[0][0] == 0


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


def test_broker_pids_are_carried_apart_from_server_pids():
    options = parse_options(["--server-pid", "10", "--broker-pid", "11", "--broker-pid", "12"])
    assert options.server_pids == (10,) and options.broker_pids == (11, 12)
    assert options.to_dict()["broker_pids"] == [11, 12]
