"""Sans-IO wire codecs and adapters: the V1.0 TCP protocol (bytes <-> packets <-> session commands) and Asterisk AudioSocket."""
