"""Wiring from configuration and the server's command line."""
