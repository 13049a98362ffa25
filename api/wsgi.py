"""WSGI entry point for gunicorn: `api.wsgi:app`."""

from api import create_app
from core.logs import configure_logging

configure_logging(background=True)  # request threads hand their lines to a writer thread
app = create_app()
