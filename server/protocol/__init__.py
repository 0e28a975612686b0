"""The client protocol core: frames in, commands out; replies and pushes in, bytes out.

Pure functions and value types, no I/O. Speaks the Centrifugo client protocol v2:
JSON (newline-delimited messages in a frame) and our MessagePack variant (the same
maps, concatenated in a binary frame, selected by the `msgpack` subprotocol).

The package's modules: `values` (types shared with the broker and the hub),
`codec` (frames and message bytes, replies and pushes), `commands` (the
command envelope and typed requests); each states its contract. Import from here.
"""

from .codec import (
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
from .commands import (
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
from .values import ClientInfo, Encoding, ProtocolError, Publication, StreamPosition

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
