"""HTTP: app factory, routes, schemas, auth."""
