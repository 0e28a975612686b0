"""wsfan: a real-time WebSocket server speaking the Centrifugo client protocol."""

__version__ = "0.1.0.dev0"
