"""The doors: I/O only, siblings that never import each other (V1.0 TCP, Asterisk AudioSocket, HTTP/WebSocket `web`)."""
