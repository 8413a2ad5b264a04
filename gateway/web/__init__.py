"""The nurse view served by the gateway (gateway/web/server.py, docs/nurse-view.md)."""
