"""Definitions of the extract stage."""
