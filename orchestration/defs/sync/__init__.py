"""Definitions of the sync stage."""
