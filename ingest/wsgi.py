"""The ingest service as gunicorn serves it: ``gunicorn -c ingest/gunicorn_conf.py ingest.wsgi:application``.

The one place the web process is wired to the workers' doorbell, so ``ingest.app`` can be built
with any other (tests pass one they observe).
"""

from ingest.app import create_app
from workers.doorbell import ring

application = create_app(ring)
