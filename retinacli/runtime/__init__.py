"""Backends that run an exported model: one interface, one small file per runtime."""
