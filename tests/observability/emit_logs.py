"""A process of ours logging through config.logging: ``python -m tests.observability.emit_logs``.

Each record is one the tests look for, by its first word."""

from __future__ import annotations

import logging
import sys

from config import logcontext
from config.logging import configure
from config.settings import LOCAL_STATUS_TOKEN, LOCAL_TOKEN_KEY

configure(sys.argv[1] if len(sys.argv) > 1 else "probe")
log = logging.getLogger("workers.probe")

log.info("plain line")
with logcontext.bind(shop="acme-nl.myshopify.com", event_id="evt_1"):
    log.info("bound to the shop")
    with logcontext.bind(order_id=1106):
        log.info("nested adds the order")
    log.info("after-nesting keeps the shop")
log.info("unbound again")
log.info("extra names the order", extra={"order_id": 7, "shop": "extra.myshopify.com"})
log.warning("token in the message shpat_abc123 and the args %s %s", "shpss_secret42", "whsec_c2VjcmV0")
log.warning("header %s", "Authorization: Bearer abc.def-ghi")
log.warning("flower sent Basic b3BzOmh1bnRlcjI=")
log.warning("fernet key %s", LOCAL_TOKEN_KEY)
log.warning("url redis://:hunter2hunter2@10.0.0.1:6379/0")
log.warning("status token %s", LOCAL_STATUS_TOKEN)
log.info('two lines\nforged {"level": "INFO"}')
try:
    raise RuntimeError("refused shprt_refresh999")
except RuntimeError:
    log.exception("failure while refreshing")
