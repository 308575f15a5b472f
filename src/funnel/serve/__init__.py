"""Serving: the funnel over HTTP, online session state, hot reload, the web page."""
