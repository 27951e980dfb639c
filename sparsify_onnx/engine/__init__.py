"""The engine directory: package (atomic write), load (hash-checked), verify."""
from .load import LIBRARY, check_engine, load_engine, session_options
from .manifest import read_manifest, write_manifest
from .package import staging_dir
from .verify import Verification, compare_outputs, raise_if_failed, verify

__all__ = ["LIBRARY", "check_engine", "load_engine", "session_options", "read_manifest", "write_manifest",
           "staging_dir", "Verification", "compare_outputs", "raise_if_failed", "verify"]
