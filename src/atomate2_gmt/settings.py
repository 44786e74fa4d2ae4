"""Settings for atomate2-gmt, in the pattern of atomate2's ``Atomate2Settings``.

Values come, highest priority first, from keyword arguments, environment variables with the
prefix ``ATOMATE2_GMT_`` (e.g. ``ATOMATE2_GMT_DEVICE=cuda``; dict fields as JSON), a YAML file
(``~/.atomate2_gmt.yaml``, or the path in ``ATOMATE2_GMT_CONFIG_FILE``), then the defaults here.

Stores: with no store spec and no ``MONGO_URI`` every store is embedded on disk in
``PROJECT_DIR`` (no server). ``MONGO_URI`` (+ ``MONGO_DATABASE``) switches all stores to MongoDB;
a per-store spec (a maggma ``Store.as_dict()`` dict) overrides both for that store.
Credentials are read only from here and are masked in ``repr``/``str``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote, unquote_plus

from pydantic import Field, SecretStr, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from atomate2_gmt.tensors.tasks import TASKS

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "TASKS",
    "GMTSettings",
    "mask_secrets",
    "mask_uri",
    "remember_uri_secrets",
    "resolve_settings",
    "uri_secrets",
]

DEFAULT_CONFIG_FILE = "~/.atomate2_gmt.yaml"
ENV_PREFIX = "ATOMATE2_GMT_"


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_SECRET_KEYS = frozenset({"password", "passwd", "pwd", "secret", "token", "api_key", "key_secret"})
_URI_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")
"""Where a URI starts in free text (a scheme and ``://``) up to the next blank; the URI itself
is then taken apart by :func:`_mask_one_uri`."""
_SECRET_PARAM_HINTS = ("pass", "pwd", "secret", "token", "key", "credential", "authmechanismprop")
"""A query parameter whose lower-cased name (``_``/``-`` removed) contains one of these carries a
secret: ``password``, ``tlsCertificateKeyFilePassword``, ``authMechanismProperties``
(``AWS_SESSION_TOKEN:…``), ``api_key``, ``token``."""
_SECRET_PIECE_MIN = 2
"""Pieces of a known password shorter than this are not scrubbed from free text."""
_KNOWN_SECRETS: set[str] = set()


def _secret_param(name: str) -> bool:
    flat = unquote(name).lower().replace("_", "").replace("-", "")
    return any(hint in flat for hint in _SECRET_PARAM_HINTS)


def _mask_query(query: str) -> tuple[str, bool]:
    """``query`` with the values of secret parameters masked; and whether the last parameter
    was a secret (a ``#`` after it may belong to the secret)."""
    out: list[str] = []
    masking = False
    for segment in re.split(r"([&;])", query):
        if segment in ("&", ";"):
            out.append(segment)
            continue
        name, eq, _ = segment.partition("=")
        if eq and _secret_param(name):
            out.append(f"{name}=***")
            masking = True
        elif not eq and masking and segment:  # an unescaped '&' inside a secret value
            out.append("***")
        else:
            out.append(segment)
            masking = False
    return "".join(out), masking


def _split_uri(uri: str) -> tuple[str, str | None, str, str | None, str | None]:
    """(scheme, userinfo or None, host and path, query or None, fragment or None) of ``uri``
    (``scheme://…``). The userinfo ends at the *last* ``@``, so a password with unescaped
    reserved characters (``/ : ? # @``) stays inside it; the rest is split as RFC 3986 does
    (fragment at the first ``#``, then query at the first ``?``)."""
    scheme, _, rest = uri.partition("://")
    userinfo: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
    main, hash_, fragment = rest.partition("#")
    hostpath, qmark, query = main.partition("?")
    return scheme, userinfo, hostpath, query if qmark else None, fragment if hash_ else None


def _mask_one_uri(uri: str) -> str:
    scheme, userinfo, hostpath, query, fragment = _split_uri(uri)
    out = f"{scheme}://"
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        out += f"{user}:***@" if colon else "***@"  # a lone userinfo may be a token
    out += hostpath
    secret_last = False
    if query is not None:
        masked, secret_last = _mask_query(query)
        out += f"?{masked}"
    if fragment is not None:
        out += "#***" if secret_last else f"#{fragment}"
    return out


def uri_secrets(uri: str) -> list[str]:
    """The secrets a URI carries (its password, the values of secret query parameters), each
    also percent-decoded and -encoded, and as written split at the URI's reserved characters
    (pieces of at least :data:`_SECRET_PIECE_MIN` characters), longest first: what must never
    appear in output."""
    if "://" not in uri:
        return []
    _, userinfo, _, query, fragment = _split_uri(uri.strip())
    found: list[str] = []
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    if query is not None:
        masking = False
        for segment in re.split(r"[&;]", query):
            name, eq, value = segment.partition("=")
            if eq and _secret_param(name):
                found.append(value)
                masking = True
            elif not eq and masking:
                found.append(segment)
            else:
                masking = False
        if masking and fragment:
            found.append(fragment)
    pieces: set[str] = set()
    for secret in found:
        pieces.update((secret, unquote(secret), unquote_plus(secret), quote_plus(secret)))
        # a driver that mis-parses the raw URI quotes the pieces between reserved characters
        pieces.update(re.split(r"[/:?#@&;=,\s]+", secret))
    return sorted((p for p in pieces if len(p) >= _SECRET_PIECE_MIN), key=lambda p: (-len(p), p))


def remember_uri_secrets(uri: str | None) -> None:
    """Scrub the secrets of ``uri`` (:func:`uri_secrets`) from everything :func:`mask_uri`
    masks from now on in this process: a server's or driver's error message may quote part of a
    malformed URI without its scheme (pymongo: ``Bad database name "PW@host/db"``)."""
    if uri:
        _KNOWN_SECRETS.update(uri_secrets(uri))


def mask_uri(text: str) -> str:
    """``text`` (a URI, or a message that contains URIs) with every credential masked.

    Each ``scheme://…`` in ``text`` is taken apart (:func:`_split_uri`): the userinfo up to the
    last ``@`` becomes ``user:***@`` (or ``***@`` without a ``:``), the values of secret query
    parameters (``password=``, ``authMechanismProperties=``, …) become ``***``. Then every
    secret remembered with :func:`remember_uri_secrets` (the settings' ``MONGO_URI``) is
    replaced by ``***`` wherever it appears.
    """
    masked = _URI_TOKEN_RE.sub(lambda m: _mask_one_uri(m.group(0)), text)
    for secret in sorted(_KNOWN_SECRETS, key=lambda p: (-len(p), p)):
        if secret in masked:
            masked = masked.replace(secret, "***")
    return masked


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` (nested dicts/lists/strings) with passwords and URI credentials
    masked."""
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in _SECRET_KEYS and item:
                out[key] = "***"
            else:
                out[key] = mask_secrets(item)
        return out
    if isinstance(value, list | tuple):
        return type(value)(mask_secrets(item) for item in value)
    if isinstance(value, str):
        return mask_uri(value)
    return value


def _default_models() -> dict[str, str]:
    return dict.fromkeys(TASKS, "pretrained")


class GMTSettings(BaseSettings):
    """Settings for atomate2-gmt (env prefix ``ATOMATE2_GMT_``, optional YAML config file)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    CONFIG_FILE: str = Field(
        default=DEFAULT_CONFIG_FILE, description="YAML file to load alternative defaults from."
    )

    # models and inference
    MODELS: dict[str, str] = Field(
        default_factory=_default_models,
        description=(
            "Model per task: 'pretrained' (shipped weights), 'registry' (latest registered "
            "version in the registry store) or a path to a checkpoint file. Tasks not given "
            "keep 'pretrained'."
        ),
    )
    DEVICE: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    BATCH_SIZE: int = Field(default=64, gt=0, description="Structures per inference batch.")
    SYMPREC: float = Field(
        default=0.01,
        gt=0,
        description="spglib symmetry precision (Å) for symmetry and structure keys.",
    )
    MAX_SITES: int = Field(
        default=2000,
        gt=0,
        description="Largest structure (sites) screened; larger ones fail alone, with the reason.",
    )
    MAX_FILE_MB: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Largest structure file (MB) read; a larger file, or one with more lines than "
            "MAX_SITES needs, fails alone before parsing (parse time grows ~quadratically)."
        ),
    )

    # where things live
    PROJECT_DIR: Path = Field(
        default=Path("./gmt_project"),
        description="Project folder; the embedded stores and registry blobs live in it.",
    )

    # stores
    MONGO_URI: SecretStr | None = Field(
        default=None,
        description=(
            "MongoDB connection string (may carry credentials). When set, all stores without "
            "their own spec are MongoDB collections in MONGO_DATABASE."
        ),
    )
    MONGO_DATABASE: str = Field(
        default="atomate2_gmt", description="Database name used with MONGO_URI."
    )
    STORE_TIMEOUT_S: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a store server before failing."
    )
    CANDIDATE_STORE: dict[str, Any] | None = Field(
        default=None, description="maggma Store.as_dict() spec of the prediction (candidate) store."
    )
    TRAINING_STORE: dict[str, Any] | None = Field(
        default=None, description="maggma Store.as_dict() spec of the training-record store."
    )
    REGISTRY_STORE: dict[str, Any] | None = Field(
        default=None, description="maggma Store.as_dict() spec of the model-registry store."
    )
    REGISTRY_BLOB_STORE: dict[str, Any] | None = Field(
        default=None,
        description="maggma Store.as_dict() spec of the registry weights (blob) store.",
    )
    CANDIDATE_COLLECTION: str = Field(
        default="gmt_predictions", description="Prediction collection."
    )
    TRAINING_COLLECTION: str = Field(
        default="gmt_training", description="Training-record collection."
    )
    REGISTRY_COLLECTION: str = Field(default="gmt_models", description="Model-registry collection.")
    REGISTRY_BLOB_COLLECTION: str = Field(
        default="gmt_model_blobs",
        description="GridFS bucket / folder name of the registry weights.",
    )

    @model_validator(mode="before")
    @classmethod
    def load_default_settings(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Use the YAML config file (if any) as defaults under env vars and keyword arguments."""
        from monty.serialization import loadfn

        config_file_path = Path(
            values.get("CONFIG_FILE", DEFAULT_CONFIG_FILE) or DEFAULT_CONFIG_FILE
        ).expanduser()
        env_var_name = f"{ENV_PREFIX}CONFIG_FILE"
        new_values: dict[str, Any] = {}
        if config_file_path.exists():
            if config_file_path.stat().st_size == 0:
                warnings.warn(f"{env_var_name} at {config_file_path} is empty", stacklevel=2)
            else:
                try:
                    loaded = loadfn(config_file_path)
                except Exception as exc:
                    raise ValueError(
                        f"{env_var_name} at {config_file_path} is not readable YAML: {exc}"
                    ) from None
                if not isinstance(loaded, dict):
                    raise ValueError(
                        f"{env_var_name} at {config_file_path} must hold a mapping of settings, "
                        f"got {type(loaded).__name__}"
                    )
                new_values.update({str(k).upper(): v for k, v in loaded.items()})
        elif config_file_path != Path(DEFAULT_CONFIG_FILE).expanduser():
            warnings.warn(f"{env_var_name} at {config_file_path} does not exist", stacklevel=2)
        return new_values | values

    @field_validator("MODELS", mode="before")
    @classmethod
    def _merge_models(cls, value: Any) -> dict[str, str]:
        if value is None:
            return _default_models()
        if not isinstance(value, dict):
            raise ValueError(f"MODELS must be a mapping task -> model, got {type(value).__name__}")
        unknown = sorted(set(value) - set(TASKS))
        if unknown:
            raise ValueError(f"MODELS has unknown tasks {unknown}; valid tasks: {', '.join(TASKS)}")
        merged = _default_models()
        for task, spec in value.items():
            if not isinstance(spec, str | Path) or not str(spec).strip():
                raise ValueError(
                    f"MODELS[{task!r}] must be 'pretrained', 'registry' or a checkpoint path, "
                    f"got {spec!r}"
                )
            merged[task] = str(spec).strip()
        return merged

    @field_validator("DEVICE")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_RE.match(value):
            raise ValueError(
                f"DEVICE must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}"
            )
        return value

    @field_validator(
        "CANDIDATE_COLLECTION",
        "TRAINING_COLLECTION",
        "REGISTRY_COLLECTION",
        "REGISTRY_BLOB_COLLECTION",
    )
    @classmethod
    def _check_collection(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                f"collection name {value!r} must be letters, digits and underscores, "
                "not starting with a digit"
            )
        return value

    @field_validator("CANDIDATE_STORE", "TRAINING_STORE", "REGISTRY_STORE", "REGISTRY_BLOB_STORE")
    @classmethod
    def _check_store_spec(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not {"@module", "@class"} <= set(value):
            raise ValueError(
                "a store spec must be a maggma Store.as_dict() dict with '@module' and '@class' "
                f"keys, got keys {sorted(value)}"
            )
        return value

    @field_serializer(
        "CANDIDATE_STORE",
        "TRAINING_STORE",
        "REGISTRY_STORE",
        "REGISTRY_BLOB_STORE",
        when_used="json",
    )
    def _mask_store_spec(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return mask_secrets(value)  # type: ignore[no-any-return]

    def model_for(self, task: str) -> str:
        """The model spec for ``task``: 'pretrained', 'registry' or a checkpoint path."""
        if task not in self.MODELS:
            raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
        return self.MODELS[task]

    @property
    def mongo_uri(self) -> str | None:
        """The MongoDB URI in clear text (for building clients only; never log it). Its
        secrets are remembered for :func:`mask_uri`."""
        if self.MONGO_URI is None:
            return None
        uri = self.MONGO_URI.get_secret_value()
        remember_uri_secrets(uri)
        return uri

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_secrets(value)


def resolve_settings(project_dir: str | Path | None = None) -> GMTSettings:
    """The settings in force in this process (environment, YAML file, defaults), with
    ``project_dir`` as ``PROJECT_DIR`` when given: the one place the package reads them.

    Called at the edges only: the CLI's context (once per invocation), the web app, and a job
    as it starts on its worker, which then passes them down as an argument. A job document
    never carries settings (a Maker names at most its ``project_dir``), so credentials stay on
    the worker. Library functions take ``settings`` as an argument and resolve it here only
    when a caller outside the package passes none.
    """
    if project_dir is not None:
        return GMTSettings(PROJECT_DIR=Path(project_dir))
    return GMTSettings()
