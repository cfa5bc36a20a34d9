"""Reads a governance policy file (or the packaged default) and validates it with core/policy/rules_parse.py.

The I/O half of the policy: the server and `fhirgate policy` call `load_policy`; every file problem is a
ConfigError naming the path, and an invalid policy a PolicyError (a ConfigError) listing every issue,
so the server refuses to start on a policy it cannot honour.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fhirgate.core.policy.rules import Policy
from fhirgate.core.policy.rules_parse import load_policy_text
from fhirgate.errors import ConfigError

DEFAULT_POLICY_PACKAGE = "fhirgate.core.policy"
DEFAULT_POLICY_NAME = "default_policy.toml"
DEFAULT_POLICY_SOURCE = "(default policy)"
MAX_POLICY_BYTES = 1_000_000  # a policy is a page or two of TOML; anything this big is the wrong file


def default_policy_text() -> str:
    """The packaged default policy's TOML text (core/policy/default_policy.toml)."""
    return resources.files(DEFAULT_POLICY_PACKAGE).joinpath(DEFAULT_POLICY_NAME).read_text("utf-8")


def load_policy(path: Path | None) -> Policy:
    """The validated policy in `path`, or the packaged default when `path` is None.

    Raises ConfigError naming the path when the file is missing, not a file, unreadable, too large or
    not UTF-8, and PolicyError (a ConfigError with `issues`) when its content is invalid.
    """
    if path is None:
        return load_policy_text(default_policy_text(), DEFAULT_POLICY_SOURCE)
    return load_policy_text(read_policy_file(path), str(path))


def read_policy_file(path: Path) -> str:
    """The text of a policy file; ConfigError naming the path for every way reading it can fail."""
    try:
        if not path.exists():
            raise ConfigError(f"policy file not found: {path}")
        if not path.is_file():
            raise ConfigError(f"policy path is not a file: {path}")
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise ConfigError(f"policy file too large: {path} ({size} bytes; at most {MAX_POLICY_BYTES})")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"policy file is not UTF-8 text: {path}") from None
