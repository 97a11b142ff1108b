"""Run the gateway service: `python -m services.gateway`."""

from services.gateway.app import SERVICE, create_app
from shared import runtime, settings

if __name__ == "__main__":
    host, port = settings.http_address(default_port=8080)
    runtime.main(SERVICE, create_app, host, port)
