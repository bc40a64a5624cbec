"""A small client for OpenAI-compatible chat endpoints (vLLM, Ollama, llama.cpp server, OpenAI).

Only the standard library: one POST to ``{url}/chat/completions`` per call, a timeout on every
socket operation, retries with exponential backoff for transient failures (timeouts, refused
connections, HTTP 408/429/5xx; a ``Retry-After`` header is honored up to `MAX_RETRY_AFTER_S`),
and errors whose message names the endpoint and what went wrong. A reply without
``choices[0].message.content`` is a `MalformedReplyError` and is not retried.

Configuration comes from arguments or the environment: ``KINEMA_LLM_URL``, ``KINEMA_LLM_MODEL``,
``KINEMA_LLM_API_KEY`` (and ``KINEMA_LLM_TIMEOUT``, ``KINEMA_LLM_RETRIES``); another prefix
(``KINEMA_VLM`` for captioning) falls back to these.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ChatClient",
    "EndpointConfig",
    "EndpointError",
    "EndpointHTTPError",
    "EndpointTimeoutError",
    "EndpointUnreachableError",
    "MalformedReplyError",
]

LLM_ENV = "KINEMA_LLM"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
_MAX_BODY_IN_ERROR = 300  # characters of a server's error body quoted in our message


class EndpointError(RuntimeError):
    """The chat endpoint could not give an answer."""


class EndpointTimeoutError(EndpointError):
    """No reply within the timeout (after all retries)."""


class EndpointUnreachableError(EndpointError):
    """Connection refused, host not found, or the connection dropped (after all retries)."""


class EndpointHTTPError(EndpointError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class MalformedReplyError(EndpointError):
    """The endpoint answered 200 but not with an OpenAI chat completion."""


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to reach an OpenAI-compatible chat endpoint."""

    url: str  # base URL, e.g. http://127.0.0.1:8000/v1 (or the full .../chat/completions)
    model: str  # model name the server knows, e.g. "qwen2.5:7b-instruct"
    api_key: str | None = None  # sent as "Authorization: Bearer KEY" when set
    timeout: float = 60.0  # seconds per connect/read
    retries: int = 2  # extra attempts after the first for transient failures
    backoff: float = 0.5  # seconds before the first retry; doubles each time

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint url must start with http:// or https://, got {self.url!r}")
        if not self.model:
            raise ValueError("endpoint model is empty; name the model the server serves")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")

    @property
    def completions_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    @classmethod
    def from_env(
        cls,
        prefix: str = LLM_ENV,
        *,
        url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> EndpointConfig:
        """Arguments win over ``{prefix}_URL``/``_MODEL``/``_API_KEY``/``_TIMEOUT``/``_RETRIES``,
        which win over the ``KINEMA_LLM_*`` ones. Raises ValueError when no URL or model is set."""
        env = os.environ if environ is None else environ

        def source(name: str) -> str | None:
            """The variable that sets `name`: ``{prefix}_NAME``, else ``KINEMA_LLM_NAME``."""
            for p in dict.fromkeys([prefix, LLM_ENV]):
                if env.get(f"{p}_{name}"):
                    return f"{p}_{name}"
            return None

        def read(name: str) -> str | None:
            var = source(name)
            return None if var is None else env[var]

        def number(name: str, kind: type[float] | type[int], value: float | None, default: float):
            if value is not None:
                return value
            var = source(name)
            try:
                return kind(env[var]) if var is not None else default
            except ValueError:
                noun = "a number of seconds" if kind is float else "a whole number"
                raise ValueError(f"{var} must be {noun}, got {env[var]!r}") from None

        url = url or read("URL")
        model = model or read("MODEL")
        if not url or not model:
            missing = " and ".join(n for n, v in (("URL", url), ("MODEL", model)) if not v)
            flag = "--" + prefix.rsplit("_", 1)[-1].lower()
            raise ValueError(
                f"no endpoint {missing}: pass {flag}-url and {flag}-model (or set {prefix}_URL "
                f"and {prefix}_MODEL), e.g. {prefix}_URL=http://127.0.0.1:11434/v1 for Ollama"
            )
        timeout = number("TIMEOUT", float, timeout, 60.0)
        retries = number("RETRIES", int, retries, 2)
        return cls(url, model, api_key or read("API_KEY"), timeout, retries)


class ChatClient:
    """``ChatClient(config).complete(messages)`` → the assistant's reply text."""

    def __init__(self, config: EndpointConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._sleep = sleep

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float = 0.2,
        max_tokens: int = 400,
        seed: int | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": False,
        }
        if seed is not None:
            body["seed"] = seed
        reply = self._post_with_retries(json.dumps(body).encode())
        return self._content(reply)

    def _post_with_retries(self, data: bytes) -> bytes:
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                return self._post(data)
            except _TransientError as e:
                if attempt + 1 == attempts:
                    raise e.final from None
                delay = self.config.backoff * 2**attempt
                if e.retry_after is not None:
                    delay = min(max(delay, e.retry_after), MAX_RETRY_AFTER_S)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _post(self, data: bytes) -> bytes:
        url = self.config.completions_url
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            error = _http_error(url, e)
            if e.code in RETRYABLE_STATUS:
                raise _TransientError(error, _retry_after(e.headers.get("Retry-After"))) from e
            raise error from e
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as e:
            raise _TransientError(_transport_error(url, e, self.config.timeout)) from e

    def _content(self, raw: bytes) -> str:
        url = self.config.completions_url
        try:
            reply = json.loads(raw)
            content = reply["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MalformedReplyError(
                f"{url} did not answer with JSON ({e}); got {_quote(raw)}; is the URL an "
                f"OpenAI-compatible API base (usually ending in /v1)?"
            ) from e
        except (KeyError, IndexError, TypeError) as e:
            raise MalformedReplyError(
                f"{url} answered JSON without choices[0].message.content: {_quote(raw)}"
            ) from e
        if not isinstance(content, str) or not content.strip():
            raise MalformedReplyError(f"{url} answered an empty message: {_quote(raw)}")
        return content.strip()


class _TransientError(Exception):
    """Internal: a failure worth retrying; `final` is what the caller sees when retries run out."""

    def __init__(self, final: EndpointError, retry_after: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.retry_after = retry_after


def _quote(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return repr(text if len(text) <= _MAX_BODY_IN_ERROR else text[:_MAX_BODY_IN_ERROR] + "…")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing, use the backoff
        return None


def _http_error(url: str, e: urllib.error.HTTPError) -> EndpointHTTPError:
    try:
        body = e.read()
    except OSError:
        body = b""
    hint = {
        401: "; check the API key",
        403: "; check the API key",
        404: "; check the URL (the API base, usually ending in /v1) and the model name",
    }.get(e.code, "")
    message = f"{url} answered HTTP {e.code} {e.reason}: {_quote(body)}{hint}"
    return EndpointHTTPError(message, e.code)


def _transport_error(url: str, e: BaseException, timeout: float) -> EndpointError:
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, TimeoutError):
        return EndpointTimeoutError(f"{url} did not answer within {timeout:g} s")
    return EndpointUnreachableError(f"cannot reach {url}: {reason}")
