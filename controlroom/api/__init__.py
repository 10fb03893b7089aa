"""The HTTP API: one RouteTableDef per module, mounted under /api/v1 by controlroom.app."""
