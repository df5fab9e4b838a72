"""Route policies that rewrite the canonical request: enrichment, field defaults, and the
headers content-based routing is computed from."""
