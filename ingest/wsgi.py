"""The ingest service as gunicorn serves it.

``gunicorn -c ingest/gunicorn_conf.py ingest.wsgi:application`` (the Procfile's ``web``).
"""

from config import get_settings, require_safe
from ingest.app import create_app

require_safe(get_settings(), "web")
application = create_app()
