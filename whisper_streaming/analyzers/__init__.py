"""Analyses of a final transcript behind one interface (sentiment now; speaker, acoustic features later)."""
