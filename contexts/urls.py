"""Routes of the staff pages."""

urlpatterns: list = []
