"""Authentication (`/authentication`): the built-in-database authenticator and its users, the
PostgreSQL authenticator (postgres.py), the chain's order, and on 6.x the settings and node cache.

Read from `[v5.8.9] apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl`, `emqx_authn_chains.erl`
and `apps/emqx_auth_mnesia/src/emqx_authn_mnesia.erl` (reference sections 8, 13.10 and 14.1):
POST appends to the chain and answers 200 with the stored config, which 5.8.9 does not redact
(the password comes back in clear) and 6.2.2 does; GET redacts; PUT treats `******` as "keep";
`PUT .../position/{front|rear|before:ID|after:ID}` reorders (204);
`GET .../status` reports the backend's resource status. 6.x only:
`GET|PUT /authentication/settings` (PUT replaces the whole root: keys left out get their
defaults; 204) and `POST /authentication/node_cache/reset` (`[6.2.2] emqx_authn_api.erl:809-853`).
"""

from __future__ import annotations

from typing import Any

from tests.emqx_double.postgres import (
    AUTHN_SETTINGS_DEFAULTS,
    POSTGRES_AUTHN_ID,
    PostgresBackends,
    status_answer,
    validate_authenticator,
    validate_node_cache,
)
from tests.emqx_double.schema import (
    AUTHN_DEFAULTS,
    AUTHN_FIELDS,
    BUILTIN_AUTHN_ID,
    SIMPLE_HASHES,
    Answer,
    ApiError,
    Request,
    bad_request,
    deobfuscate,
    not_found,
    paginate,
    redact,
    reject_unknown_fields,
    require_bool,
    require_int,
    validation_error,
    with_defaults,
)
from tests.emqx_double.state import EmqxState


class AuthnApi:
    """The authenticator and user handlers; mixed into EmqxDouble, which provides the state."""

    version: str
    _state: EmqxState
    postgres: PostgresBackends

    def _authn_routes(self) -> list[tuple[str, tuple[str, ...], Any]]:
        users = ("authentication", "*", "users")
        settings: list[tuple[str, tuple[str, ...], Any]] = []
        if self.version == "6.x":  # before ("authentication", "*"), which would take "settings" as an id
            settings = [
                ("GET", ("authentication", "settings"), self._get_authn_settings),
                ("PUT", ("authentication", "settings"), self._put_authn_settings),
                ("POST", ("authentication", "node_cache", "reset"), self._reset_authn_node_cache),
            ]
        return settings + [
            ("GET", ("authentication", "*", "status"), self._authenticator_status),
            ("PUT", ("authentication", "*", "position", "*"), self._move_authenticator),
            ("GET", ("authentication",), self._list_authenticators),
            ("POST", ("authentication",), self._create_authenticator),
            ("GET", ("authentication", "*"), self._get_authenticator),
            ("PUT", ("authentication", "*"), self._update_authenticator),
            ("DELETE", ("authentication", "*"), self._delete_authenticator),
            ("GET", users, self._list_users),
            ("POST", users, self._create_user),
            ("GET", (*users, "*"), self._get_user),
            ("PUT", (*users, "*"), self._update_user),
            ("DELETE", (*users, "*"), self._delete_user),
        ]

    @staticmethod
    def _validate_hash_algorithm(algorithm: Any) -> None:
        if not isinstance(algorithm, dict) or "name" not in algorithm:
            raise validation_error("password_hash_algorithm", "expected an object with a name")
        name = algorithm["name"]
        if name == "bcrypt":
            reject_unknown_fields(algorithm, frozenset({"name", "salt_rounds"}), "password_hash_algorithm")
            require_int(algorithm.get("salt_rounds", 10), "password_hash_algorithm.salt_rounds", 5, 10)
        elif name in SIMPLE_HASHES:
            reject_unknown_fields(algorithm, frozenset({"name", "salt_position"}), "password_hash_algorithm")
            if algorithm.get("salt_position", "prefix") not in ("disable", "prefix", "suffix"):
                raise validation_error("password_hash_algorithm.salt_position", "must be disable|prefix|suffix")
        elif name == "pbkdf2":
            reject_unknown_fields(algorithm, frozenset({"name", "mac_fun", "iterations", "dk_length"}),
                                  "password_hash_algorithm")
            for key in ("iterations", "dk_length"):
                if key in algorithm:
                    require_int(algorithm[key], f"password_hash_algorithm.{key}", low=1)
        else:
            raise validation_error("password_hash_algorithm.name", f"unknown algorithm {name!r}")

    def _validate_authenticator(self, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and (body.get("mechanism"), body.get("backend")) == ("password_based", "postgresql"):
            return {"mechanism": "password_based", "backend": "postgresql",
                    **validate_authenticator(body, self.version)}
        body = reject_unknown_fields(body, AUTHN_FIELDS, "authentication")
        if (body.get("mechanism"), body.get("backend")) != ("password_based", "built_in_database"):
            raise validation_error("authentication", "the double supports password_based:built_in_database "
                                                     "and password_based:postgresql only")
        if body.get("user_id_type", "username") not in ("username", "clientid"):
            raise validation_error("authentication.user_id_type", "must be username or clientid")
        if "enable" in body:
            require_bool(body["enable"], "authentication.enable")
        algorithm = body.get("password_hash_algorithm", AUTHN_DEFAULTS["password_hash_algorithm"])
        self._validate_hash_algorithm(algorithm)
        if algorithm["name"] == "bcrypt":
            algorithm = {"salt_rounds": 10, **algorithm}
        elif algorithm["name"] in SIMPLE_HASHES:
            algorithm = {"salt_position": "prefix", **algorithm}
        return {**with_defaults(body, AUTHN_DEFAULTS), "password_hash_algorithm": algorithm}

    def _configure_backend(self, authn_id: str) -> None:
        """EMQX (re)creates the authenticator's resource on every create and update."""
        if authn_id == POSTGRES_AUTHN_ID:
            config = self._state.authenticators.get(authn_id)
            self.postgres.configure_authenticator(config, (self._state.authn_settings or {}).get("node_cache"))

    def _authenticator_view(self, authn_id: str) -> dict[str, Any]:
        return redact({"id": authn_id, **self._state.authenticators[authn_id]})

    def _list_authenticators(self, request: Request, _: list[str]) -> Answer:
        return Answer(200, [self._authenticator_view(i) for i in self._state.authenticators])

    def _create_authenticator(self, request: Request, _: list[str]) -> Answer:
        config = self._validate_authenticator(request.json_body())
        authn_id = f"{config['mechanism']}:{config['backend']}"
        if authn_id in self._state.authenticators:
            raise ApiError(409, "ALREADY_EXISTS", f"Authenticator '{authn_id}' already exist")
        self._state.authenticators[authn_id] = config  # appended to the chain
        self._state.global_chain_exists = True
        self._configure_backend(authn_id)
        if self.version == "5.8":  # built from the raw config without redaction (emqx_authn_api.erl:880-887)
            return Answer(200, {"id": authn_id, **config})
        return Answer(200, self._authenticator_view(authn_id))

    def _require_authenticator(self, authn_id: str) -> None:
        if authn_id not in self._state.authenticators:
            raise not_found(f"Authenticator '{authn_id}' does not exist")

    def _get_authenticator(self, request: Request, captured: list[str]) -> Answer:
        self._require_authenticator(captured[0])
        return Answer(200, self._authenticator_view(captured[0]))

    def _update_authenticator(self, request: Request, captured: list[str]) -> Answer:
        authn_id = captured[0]
        body = request.json_body()
        self._require_authenticator(authn_id)
        if not isinstance(body, dict):
            raise validation_error("authentication", "expected an object")
        if f"{body.get('mechanism')}:{body.get('backend')}" != authn_id:
            raise bad_request("Change of authentication type is not allowed")
        body = deobfuscate(body, self._state.authenticators[authn_id])
        self._state.authenticators[authn_id] = self._validate_authenticator(body)
        self._configure_backend(authn_id)
        return Answer(204)

    def _delete_authenticator(self, request: Request, captured: list[str]) -> Answer:
        if not self._state.global_chain_exists:
            raise not_found("Authenticator not found in the 'global' scope")
        if self._state.authenticators.pop(captured[0], None) is not None and captured[0] == BUILTIN_AUTHN_ID:
            self._state.authn_users.clear()  # the provider's destroy/1 erases its user group
        self._configure_backend(captured[0])
        return Answer(204)  # "Idempotence intended" once the chain exists

    def _authenticator_status(self, request: Request, captured: list[str]) -> Answer:
        self._require_authenticator(captured[0])
        config = self._state.authenticators[captured[0]]
        if captured[0] != POSTGRES_AUTHN_ID:
            return Answer(200, status_answer("connected"))  # no resource behind the built-in database
        return Answer(200, status_answer(self.postgres.status(config) if config["enable"] else "stopped"))

    def _move_authenticator(self, request: Request, captured: list[str]) -> Answer:
        authn_id, position = captured
        self._require_authenticator(authn_id)
        order = [i for i in self._state.authenticators if i != authn_id]
        where, _, anchor = position.partition(":")
        if position == "front":
            index = 0
        elif position == "rear":
            index = len(order)
        elif where in ("before", "after") and anchor in order:
            index = order.index(anchor) + (1 if where == "after" else 0)
        elif where in ("before", "after"):
            raise not_found(f"Authenticator '{anchor}' does not exist")
        else:
            raise bad_request(f"Invalid parameter. Unknown position: {position}")
        order.insert(index, authn_id)
        self._state.authenticators = {i: self._state.authenticators[i] for i in order}
        return Answer(204)

    def _get_authn_settings(self, request: Request, _: list[str]) -> Answer:
        settings = self._state.authn_settings or {}
        return Answer(200, {**AUTHN_SETTINGS_DEFAULTS, **settings,
                            "node_cache": {**AUTHN_SETTINGS_DEFAULTS["node_cache"], **settings.get("node_cache", {})}})

    def _put_authn_settings(self, request: Request, _: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset(AUTHN_SETTINGS_DEFAULTS), "settings")
        if "ignore_backend_failures" in body:
            require_bool(body["ignore_backend_failures"], "settings.ignore_backend_failures")
        if "node_cache" in body:
            validate_node_cache(body["node_cache"], "settings.node_cache")
        self._state.authn_settings = body  # the whole root is replaced
        self._configure_backend(POSTGRES_AUTHN_ID)
        return Answer(204)

    def _reset_authn_node_cache(self, request: Request, _: list[str]) -> Answer:
        self.postgres.reset(lambda backends: backends.authenticator)
        return Answer(204)

    def _users_authenticator(self, authn_id: str) -> None:
        if authn_id != BUILTIN_AUTHN_ID or authn_id not in self._state.authenticators:
            if self._state.global_chain_exists:
                raise bad_request(f"User error: {{not_found,{{authenticator,<<\"{authn_id}\">>}}}}")
            raise not_found(f"Authenticator '{authn_id}' does not exist")

    def _list_users(self, request: Request, captured: list[str]) -> Answer:
        self._users_authenticator(captured[0])
        users = [{"user_id": u, "is_superuser": v["is_superuser"]} for u, v in sorted(self._state.authn_users.items())]
        return paginate(request, users)

    def _create_user(self, request: Request, captured: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset({"user_id", "password", "is_superuser"}), "user")
        self._users_authenticator(captured[0])
        user_id, password = body.get("user_id"), body.get("password")
        if not isinstance(user_id, str) or not user_id or not isinstance(password, str) or not password:
            raise bad_request("user_id and password are required and must not be empty")
        if user_id in self._state.authn_users:
            raise ApiError(409, "ALREADY_EXISTS", "User already exists")
        is_superuser = require_bool(body.get("is_superuser", False), "user.is_superuser")
        self._state.authn_users[user_id] = {"password": password, "is_superuser": is_superuser}
        return Answer(201, {"user_id": user_id, "is_superuser": is_superuser})

    def _get_user(self, request: Request, captured: list[str]) -> Answer:
        self._users_authenticator(captured[0])
        user = self._state.authn_users.get(captured[1])
        if user is None:
            raise not_found("User not found")
        return Answer(200, {"user_id": captured[1], "is_superuser": user["is_superuser"]})

    def _update_user(self, request: Request, captured: list[str]) -> Answer:
        body = reject_unknown_fields(request.json_body(), frozenset({"password", "is_superuser"}), "user")
        self._users_authenticator(captured[0])
        if not isinstance(body.get("password"), str) or not body["password"]:
            raise validation_error("user.password", "required_field")
        user = self._state.authn_users.get(captured[1])
        if user is None:
            raise not_found("User not found")
        user["password"] = body["password"]
        user["is_superuser"] = require_bool(body.get("is_superuser", user["is_superuser"]), "user.is_superuser")
        return Answer(200, {"user_id": captured[1], "is_superuser": user["is_superuser"]})

    def _delete_user(self, request: Request, captured: list[str]) -> Answer:
        self._users_authenticator(captured[0])
        if self._state.authn_users.pop(captured[1], None) is None:
            raise not_found("User not found")
        return Answer(204)

    # ---- authorization sources, rules and settings ---------------------------------------
