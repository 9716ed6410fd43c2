"""The official `openai` and `anthropic` clients, routed to the gateway with the Outlay key, and
their refusals raised as typed Outlay errors that stay the SDK's own status errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outlay.sdk.errors import OutlayError, error_from_answer
from outlay.sdk.patches import Patches, optional_import


@dataclass(frozen=True)
class _Sdk:
    package: str
    clients: tuple[str, ...]
    path: str  # what the SDK expects after the host in its base URL
    # constructor arguments that choose another endpoint or credential, and that the SDK
    # refuses beside an explicit api_key or base_url
    conflicting: tuple[str, ...]


_SDKS = (
    # the gateway serves OpenAI's routes under /v1, as api.openai.com does
    _Sdk("openai", ("OpenAI", "AsyncOpenAI"), "/v1",
         ("provider", "workload_identity", "data_residency")),
    # the Anthropic SDK adds /v1/messages itself
    _Sdk("anthropic", ("Anthropic", "AsyncAnthropic"), "",
         ("auth_token", "credentials", "config", "profile")),
)


def route_llm_clients(patches: Patches, gateway: str, key: str) -> None:
    """Make every client constructed from now on talk to `gateway` with `key`."""
    for sdk in _SDKS:
        module = optional_import(sdk.package)
        if module is None:
            continue
        for name in sdk.clients:
            cls = getattr(module, name, None)
            if not isinstance(cls, type):
                continue
            patches.replace(cls, "__init__",
                            functools.partial(_routed_init, cls, sdk, gateway + sdk.path, key))
            patches.replace(cls, "_make_status_error", _typed_status_errors)


def _routed_init(
    target: type, sdk: _Sdk, base_url: str, key: str, init: Callable[..., None]
) -> Callable[..., None]:
    @functools.wraps(init)
    def routed_init(self: Any, *args: Any, **kwargs: Any) -> None:
        if _is_routed(type(self), target, sdk.package):
            for name in sdk.conflicting:
                kwargs.pop(name, None)
            kwargs["api_key"] = key
            kwargs["base_url"] = base_url
        init(self, *args, **kwargs)

    return routed_init


def _is_routed(cls: type, target: type, package: str) -> bool:
    """The client itself and the agent's own subclasses are; the SDK's subclasses for other
    clouds (Azure, Bedrock, Google Cloud, Foundry) and openai's module-level client are not:
    they speak other URLs and credentials, or keep theirs in module globals."""
    below = cls.__mro__[: cls.__mro__.index(target)]
    return not any(c.__module__.partition(".")[0] == package for c in below)


def _typed_status_errors(make: Callable[..., BaseException]) -> Callable[..., BaseException]:
    @functools.wraps(make)
    def _make_status_error(self: Any, err_msg: str, *, body: object, response: Any) -> Any:
        error = make(self, err_msg, body=body, response=response)
        typed = error_from_answer(response.status_code, response.headers, body)
        return error if typed is None else both(error, typed)

    return _make_status_error


def both(error: BaseException, typed: OutlayError) -> BaseException:
    """One exception that is `error` (same class, same attributes) and `typed` too.

    Neither __init__ runs: the SDK's needs a live response and Outlay's would reset fields.
    Outlay's fields (`message`, `code`, `details`, `request_id`, `status`) win where names
    meet; the SDK's `str()`, `status_code`, `response` and `body` are its own.
    """
    cls = _joined(type(error), type(typed))
    joined: BaseException = cls.__new__(cls, *error.args)
    vars(joined).update(vars(error))
    vars(joined).update(vars(typed))
    return joined


# one class per pair, so that errors of one kind share a type, as the SDK's own do
_JOINED: dict[tuple[type, type], type[BaseException]] = {}


def _joined(sdk_error: type[BaseException], outlay_error: type[OutlayError]
            ) -> type[BaseException]:
    cls = _JOINED.get((sdk_error, outlay_error))
    if cls is None:
        cls = _JOINED.setdefault((sdk_error, outlay_error), _join(sdk_error, outlay_error))
    return cls


def _join(sdk_error: type[BaseException], outlay_error: type[OutlayError]
          ) -> type[BaseException]:
    # the SDK's class first: its str() and repr() describe the object, as before
    return type(outlay_error.__name__, (sdk_error, outlay_error), {
        "__module__": outlay_error.__module__,
        "__qualname__": outlay_error.__qualname__,
        "__doc__": f"{outlay_error.__name__} raised as {sdk_error.__module__}."
                   f"{sdk_error.__qualname__}.",
    })
