"""Definitions of the transform stage."""
