"""The ingest service as gunicorn serves it.

``gunicorn -c web/gunicorn_conf.py web.wsgi:application`` (the Procfile's ``web``).
"""

from config import get_settings, require_safe
from web.app import create_app

require_safe(get_settings(), "web")
application = create_app()
