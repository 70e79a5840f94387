"""How every hosted provider reads an HTTP error status: what the user is told, whether the
circuit breaker counts it, and a log line an administrator can act on."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from services.modelhost.batcher import BusyError
from services.types import ProviderError

# Besides every 5xx, the statuses the openai SDK retries itself: the server is overloaded or
# slow, not the request wrong, so a later try or another provider may well succeed.
TRANSIENT_STATUSES = frozenset({408, 409, 429})
# Server messages can be long (a whole prompt echoed back); the log needs the gist.
MAX_MESSAGE_CHARS = 300


def misconfigured(service: str) -> str:
    """The user message for a provider that cannot work until someone fixes its settings."""
    return f"The {service} service is not set up correctly; an administrator needs to check it."


def openai_key_setting(base_url: str | None) -> str:
    """The setting an OpenAI-SDK provider's key came from, as far as its base URL tells."""
    host = urlsplit(base_url).hostname if base_url else None
    if host is None or host == "api.openai.com":
        return "OPENAI_API_KEY"
    # Our model host and any other OpenAI-compatible server (OPENAI_BASE_URL) look alike here.
    return f"MODEL_HOST_API_KEY or OPENAI_API_KEY (whichever is meant for {host})"


@dataclass(frozen=True, slots=True)
class StatusErrors:
    """One provider's wording for the error statuses its server answers with."""

    provider: str  # "openai:gpt-4o-mini", the log's subject
    model: str
    unavailable: str  # the provider's "try again in a minute" message
    service: str  # "text", "image": what the user is told is not set up
    key_setting: str  # the setting that holds this provider's key, never the key itself

    def to_provider_error(self, status: int, message: str) -> ProviderError:
        if status == 503 and "busy" in message.lower():
            return BusyError(self.model)  # the model host's full queue: seconds, not a minute
        if status in (401, 403):
            # Never the server's message: some echo (part of) the key they refused.
            refused = f"the server refused the API key ({status})"
            detail = f"{self.provider}: {refused}; check {self.key_setting}"
            return ProviderError(misconfigured(self.service), detail=detail, transient=False)
        gist = message[:MAX_MESSAGE_CHARS]
        if status == 404:
            detail = f"{self.provider}: not found (404), check the model name and base URL: {gist}"
            return ProviderError(misconfigured(self.service), detail=detail, transient=False)
        transient = status >= 500 or status in TRANSIENT_STATUSES
        detail = f"{self.provider} status {status}: {gist}"
        return ProviderError(self.unavailable, detail=detail, transient=transient)
