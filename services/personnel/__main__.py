"""Run the personnel service: `python -m services.personnel`."""

from services.personnel.app import SERVICE, create_app
from shared import runtime, settings

if __name__ == "__main__":
    host, port = settings.http_address(default_port=8082)
    runtime.main(SERVICE, create_app, host, port)
