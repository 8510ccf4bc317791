"""Peer operators measured beside kaito-ctrl in the same run."""
