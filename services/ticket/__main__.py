"""Run the ticket service: `python -m services.ticket`."""

from services.ticket.app import SERVICE, create_app
from shared import runtime, settings

if __name__ == "__main__":
    host, port = settings.http_address(default_port=8083)
    runtime.main(SERVICE, create_app, host, port)
