"""Generated from proto/dragoman/v1 by scripts/genproto.py."""
