"""Run the tenant service: `python -m services.tenant`."""

from services.tenant.app import SERVICE, create_app
from shared import runtime, settings

if __name__ == "__main__":
    host, port = settings.http_address(default_port=8081)
    runtime.main(SERVICE, create_app, host, port)
