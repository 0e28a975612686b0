"""The chat demo's connecting hook (examples/chat_app.py): where a connection's
name comes from, and what it keeps of a token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsfan.app import Client, ConnectContext, ConnectResult
from wsfan.auth.tokens import ConnectionClaims
from wsfan.protocol import Encoding

from examples.chat_app import NAME_MAX, ChatApp, clean_name
from tests.conftest import Opener

CLIENT_ID = "c0ffee00-1111-2222-3333-444455556666"


def connect(data: Any, claims: ConnectionClaims | None = None) -> ConnectResult:
    client = Client(CLIENT_ID, "", "websocket", "json")
    ctx = ConnectContext(client, "wsfan-chat", "", data, {}, {}, claims)
    return asyncio.run(ChatApp().connecting(ctx))


def test_the_name_in_the_connect_data_becomes_the_connection_info():
    result = connect({"name": "alice"})
    assert result == ConnectResult("", info={"name": "alice"})


def test_the_name_is_trimmed_and_cut_to_32_characters():
    assert connect({"name": "  bob  "}).info == {"name": "bob"}
    assert connect({"name": "x" * (NAME_MAX + 1)}).info == {"name": "x" * NAME_MAX}
    assert connect({"name": "x" * NAME_MAX}).info == {"name": "x" * NAME_MAX}


def test_control_characters_are_dropped_from_the_name():
    assert connect({"name": "ca\x00rol\n"}).info == {"name": "carol"}


@pytest.mark.parametrize(
    "data", [None, {}, {"name": ""}, {"name": "   "}, {"name": 42}, {"name": ["a"]}, "alice"]
)
def test_no_usable_name_is_not_refused_but_named_a_guest_by_client_id(data: Any):
    assert connect(data) == ConnectResult("", info={"name": "guest-c0ff"})


def test_a_tokens_user_wins_and_its_channels_expiry_and_info_are_kept():
    claims = ConnectionClaims("dave", 2_000_000_000, {"role": "admin"}, ("news",))
    result = connect({"name": "not dave"}, claims)
    assert result == ConnectResult(
        "dave",
        info={"role": "admin", "name": "dave"},
        channels=("news",),
        expire_at=2_000_000_000,
    )


def test_a_token_without_a_user_keeps_the_pages_name():
    claims = ConnectionClaims("", None, None, ())
    assert connect({"name": "erin"}, claims) == ConnectResult("", info={"name": "erin"})


def test_clean_name_of_something_not_a_string_is_empty():
    assert clean_name(None) == "" and clean_name(b"alice") == ""


@pytest.mark.settings(app={"handlers": "examples.chat_app:app"})
@pytest.mark.gen_test
async def test_loaded_by_app_handlers_presence_shows_the_pages_name(open_client: Opener):
    client = await open_client(Encoding.JSON)
    await client.connect(data={"name": " frank "})
    await client.result("subscribe", {"channel": "chat:names"})
    presence = await client.result("presence", {"channel": "chat:names"})
    assert [entry.get("conn_info") for entry in presence["presence"].values()] == [
        {"name": "frank"}
    ]
