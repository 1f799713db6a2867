"""Routes of the agent REST API (/api/v1/...) and its schema."""

urlpatterns: list = []
