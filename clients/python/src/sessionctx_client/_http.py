"""The HTTP library: httpx2 (httpx's maintained line, which openai brings), else plain httpx (the same API)."""

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover - where only httpx is installed
    import httpx  # type: ignore[no-redef]

__all__ = ["httpx"]
