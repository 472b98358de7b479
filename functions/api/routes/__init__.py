"""The gateway's routers, one module per area; every route is registered with `security.api_route`."""
