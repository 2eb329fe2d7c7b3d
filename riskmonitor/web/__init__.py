"""The web: the Flask app factory, the JSON API, the dashboard, the OpenAPI document and the token check."""
