"""Route modules, one per resource; ``tribune.http.app`` mounts them."""
