"""The operators' page (``/ops``): ``register(app)`` adds it to the web process."""

from web.ops.views import register

__all__ = ["register"]
