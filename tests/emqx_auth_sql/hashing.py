"""Password checks (`emqx_authn_password_hashing`, `emqx_passwd`) and `emqx_authn_utils:to_bool/1`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from tests.emqx_auth_sql.templates import V6_2, NotModelled, ProviderCrash


def _hex(data: bytes) -> str:
    return data.hex()


def _compare_caseless(computed: Any, stored: Any) -> bool:
    if not isinstance(computed, str | bytes) or not isinstance(stored, str | bytes):
        # string:lowercase/1 on a non-string (e.g. NULL -> null) raises inside the provider.
        raise ProviderCrash(f"cannot compare with {stored!r}")
    a = computed.decode() if isinstance(computed, bytes) else computed
    b = stored.decode() if isinstance(stored, bytes) else stored
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())


def check_password(algorithm: Mapping[str, Any], salt: Any, password_hash: Any, password: bytes, version: str) -> bool:
    """``emqx_authn_password_hashing:check_password/4`` and ``emqx_passwd:check_pass/3``."""
    name = algorithm["name"]
    if name == "bcrypt":
        raise NotModelled("bcrypt is not modelled here: the stack's authenticator uses sha256")
    if name == "pbkdf2":
        if not isinstance(salt, str | bytes):
            raise ProviderCrash(f"pbkdf2 salt {salt!r}")
        salt_bytes = salt.encode() if isinstance(salt, str) else salt
        dk = algorithm.get("dk_length") or hashlib.new(algorithm["mac_fun"]).digest_size
        derived = hashlib.pbkdf2_hmac(algorithm["mac_fun"], password, salt_bytes, algorithm["iterations"], dk)
        return _compare_caseless(_hex(derived), password_hash)
    position = algorithm.get("salt_position", "prefix")
    if position == "disable":
        data = password
    else:
        if not isinstance(salt, str | bytes):
            raise ProviderCrash(f"{{salt_not_string, {salt!r}}}")
        salt_bytes = salt.encode() if isinstance(salt, str) else salt
        data = salt_bytes + password if position == "prefix" else password + salt_bytes
    if name == "plain":
        if version == V6_2:  # 6.x compares plain passwords case-sensitively
            if not isinstance(password_hash, str | bytes):
                raise ProviderCrash(f"cannot compare with {password_hash!r}")
            stored = password_hash.encode() if isinstance(password_hash, str) else password_hash
            return hmac.compare_digest(data, stored)
        return _compare_caseless(data, password_hash)
    return _compare_caseless(_hex(hashlib.new({"sha": "sha1"}.get(name, name), data).digest()), password_hash)


def to_bool(value: Any) -> bool:
    """``emqx_authn_utils:to_bool/1``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value >= 1
    if isinstance(value, str):
        if value in ("true", "1"):
            return True
        try:
            return int(value) >= 1
        except ValueError:
            return False
    return False


