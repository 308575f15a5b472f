"""Server settings from the environment (``FUNNEL_*``), validated once, injected as a dependency."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel.features.personalization import STATE_WINDOW

MIN_TOKEN_LENGTH = 16
"""A guessable admin token is no token: 16 characters is 64 bits of hex."""
PLACEHOLDER_TOKENS = frozenset({"", "changeme", "change-me", "secret", "token", "admin"})


class Settings(BaseSettings):
    """Everything the server reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_", extra="forbid")

    workspace: Path = Path("funnel-workspace")
    admin_token: str | None = Field(
        default=None, description="Bearer token for /admin/*; admin endpoints are off without one."
    )
    state_url: str = Field(default="memory://", description="memory:// or redis://host:port/db")
    demo_users: bool = Field(
        default=False,
        description="List a few active user ids on GET /meta for the web page's user switcher "
        "(a demo; without it only an admin token sees them: they are real users' ids).",
    )
    state_max_actions: int = Field(
        default=STATE_WINDOW, ge=1, le=1000,
        description="Actions kept per user; the ranker's training rows were replayed with "
        f"{STATE_WINDOW}, so another value makes its skip features differ from training.",
    )
    state_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    state_max_users: int = Field(default=200_000, ge=1)
    max_k: int = Field(default=200, ge=1)
    max_query_chars: int = Field(default=200, ge=1)
    max_events_per_request: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_header_bytes: int = Field(
        default=16_384, ge=1024, le=30_720,
        description="Request headers over this get a 431 at the edge (HAProxy's buffer is 32 KiB).")
    request_timeout_s: float = Field(
        default=10.0, gt=0, le=300,
        description="A request's line, headers and body must arrive within this, or a 408 "
        "(HAProxy's timeout http-request: a client sending slowly holds no connection longer).")
    recall_k: int = Field(default=1000, ge=1)
    rank_k: int = Field(default=500, ge=1)
    torch_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Intra-op threads per worker: 1 keeps latency flat; scale with --workers.",
    )
    watch_artifacts_s: float = Field(
        default=0.0, ge=0.0, description="Poll artifacts/current every N seconds (0 = off)."
    )

    @field_validator("admin_token")
    @classmethod
    def _no_placeholder(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() in PLACEHOLDER_TOKENS:
            raise ValueError(
                "FUNNEL_ADMIN_TOKEN is a placeholder; set a real secret "
                "(e.g. `openssl rand -hex 16`)"
            )
        if value is not None and len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"FUNNEL_ADMIN_TOKEN has {len(value)} characters; use at least "
                f"{MIN_TOKEN_LENGTH} (e.g. `openssl rand -hex 16`)"
            )
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
