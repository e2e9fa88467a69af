"""Launchers: interface in base.py, one adapter per job kind beside it."""
