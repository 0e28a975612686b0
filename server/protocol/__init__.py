"""The client protocol core: frames in, commands out; replies and pushes in, bytes out.

Pure functions and value types, no I/O. Speaks the Centrifugo client protocol v2:
JSON (newline-delimited messages in a frame) and our MessagePack variant (the same
maps, concatenated in a binary frame, selected by the `msgpack` subprotocol).

Contract:
- `decode_frame` returns every message of a frame in order or raises
  `ProtocolError` (the connection closes with 3501); it never raises anything else.
- `parse_command` raises `ProtocolError` for a malformed command envelope; a
  well-formed command with an unknown method comes back with `method` unknown
  for the caller to answer 104; bad method arguments raise `ReplyError(107)`
  from `parse_request`.
- `encode` never fails on data that passed `parse_request` (or `check_data`):
  values one encoding cannot carry (binary in JSON, huge integers or lone
  surrogates in msgpack, NaN in JSON) are converted, never dropped.
- `encode_reply` gives the bytes `encode` would for the same reply, splicing in
  values encoded already (`Encoded`), so a large answer is measured piece by
  piece and encoded once.

The package's modules: `values` (types shared with the broker and the hub),
`codec` (frames and message bytes, replies and pushes), `commands` (the
command envelope and typed requests). Import from here.
"""

from server.protocol.codec import (
    PING,
    Encoded,
    Spliced,
    array_growth,
    decode_frame,
    encode,
    encode_reply,
    encode_spliced,
    error_reply,
    join_frame,
    push,
    reply,
    reply_overhead,
)
from server.protocol.commands import (
    DEFAULT_MAX_DATA_DEPTH,
    FLAG_REJECT_UNRECOVERED,
    MAX_COMMAND_ID,
    METHODS,
    Command,
    ConnectRequest,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    RPCRequest,
    SendRequest,
    SubRefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    check_data,
    parse_command,
    parse_request,
    validate_channel,
)
from server.protocol.values import ClientInfo, Encoding, ProtocolError, Publication, StreamPosition

__all__ = [
    "DEFAULT_MAX_DATA_DEPTH",
    "FLAG_REJECT_UNRECOVERED",
    "MAX_COMMAND_ID",
    "METHODS",
    "PING",
    "ClientInfo",
    "Command",
    "ConnectRequest",
    "Encoded",
    "Encoding",
    "HistoryRequest",
    "PresenceRequest",
    "PresenceStatsRequest",
    "ProtocolError",
    "Publication",
    "PublishRequest",
    "RPCRequest",
    "RefreshRequest",
    "SendRequest",
    "Spliced",
    "StreamPosition",
    "SubRefreshRequest",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "array_growth",
    "check_data",
    "decode_frame",
    "encode",
    "encode_reply",
    "encode_spliced",
    "error_reply",
    "join_frame",
    "parse_command",
    "parse_request",
    "push",
    "reply",
    "reply_overhead",
    "validate_channel",
]
