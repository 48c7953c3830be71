"""Titanic survival model service."""
